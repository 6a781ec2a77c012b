// polyrun's warm bootstrap for Java's run stage (docs/performance.md, "Warm pools").
//
// Started ahead of need in a fresh sandbox as [warm] says: the JVM with [run]'s flags, its class
// path the bootstrap's folder and /work/main.jar, which does not exist yet (the class loader
// opens a class path entry on its first lookup, and nothing looks there before the run). The JVM
// start is most of a cold run. Setup compiles this file into languages/java/warm/.
//
// Once up it writes "R" on fd 3 and closes it, then reads one run from stdin: a line with the
// byte length of a JSON header, the header {"entry", "args", "files": [{"name", "size",
// "executable"}]}, the files' bytes in that order (the compile stage's main.jar among them), and
// then the program's own stdin, which System.in reads from where this left off (stdin is read
// here unbuffered). It runs the jar's Main-Class as `java -jar /work/main.jar ARGS` would: loaded
// by the system class loader from main.jar, java.class.path and sun.java.command as -jar sets
// them, and an uncaught exception reported by the JVM itself, without this class's frames.
package polyrun;

import static java.nio.charset.StandardCharsets.UTF_8;

import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.FileDescriptor;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.lang.reflect.Field;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.LocalDateTime;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.net.URL;
import java.net.URLClassLoader;
import java.util.Comparator;
import java.util.jar.JarFile;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;

public final class Warm {
  private Warm() {}

  private static final FileInputStream STDIN = new FileInputStream(FileDescriptor.in);

  public static void main(String[] unused) throws Throwable {
    prime();
    try (FileOutputStream ready = new FileOutputStream("/proc/self/fd/3")) {
      ready.write('R');
    }
    closeFd3();

    StringBuilder length = new StringBuilder();
    for (int b; (b = readExact(1)[0]) != '\n'; ) length.append((char) b);
    byte[] text = readExact(Integer.parseInt(length.toString()));
    @SuppressWarnings("unchecked")
    Map<String, Object> header = (Map<String, Object>) new Json(text).value();

    for (Object o : (List<?>) header.get("files")) {
      Map<?, ?> f = (Map<?, ?>) o;
      Path path = Path.of("/work", (String) f.get("name"));
      Files.createDirectories(path.getParent());
      Files.write(path, readExact(((Number) f.get("size")).intValue()));
      Files.setPosixFilePermissions(
          path, PosixFilePermissions.fromString(
                    Boolean.TRUE.equals(f.get("executable")) ? "rwxr-xr-x" : "rw-r--r--"));
    }
    List<String> argList = new ArrayList<>();
    for (Object a : (List<?>) header.get("args")) argList.add((String) a);
    String[] args = argList.toArray(new String[0]);

    String mainClass;
    try (JarFile jar = new JarFile("/work/main.jar")) {
      mainClass = jar.getManifest().getMainAttributes().getValue("Main-Class");
    }
    System.setProperty("java.class.path", "/work/main.jar");
    StringBuilder command = new StringBuilder("/work/main.jar");
    for (String a : args) command.append(' ').append(a);
    System.setProperty("sun.java.command", command.toString());

    // The launcher's own checks and words (sun.launcher.LauncherHelper), exit status 1.
    Class<?> main;
    try {
      main = load(mainClass);
    } catch (ClassNotFoundException | LinkageError | IOException e) {
      System.err.println("Error: Could not find or load main class " + mainClass);
      System.err.println("Caused by: " + e);
      System.exit(1);
      return;
    }
    Method method;
    try {
      method = main.getMethod("main", String[].class);
    } catch (NoSuchMethodException e) {
      launcherError("Main method not found in class " + mainClass + ", please define the main"
                    + " method as:\n   public static void main(String[] args)\nor a JavaFX"
                    + " application class must extend javafx.application.Application");
      return;
    }
    if (!Modifier.isStatic(method.getModifiers())) {
      launcherError("Main method is not static in class " + mainClass + ", please define the"
                    + " main method as:\n   public static void main(String[] args)");
      return;
    }
    if (method.getReturnType() != void.class) {
      launcherError("Main method must return a value of type void in class " + mainClass
                    + ", please \ndefine the main method as:\n   public static void main(String[] args)");
      return;
    }
    if (main.getClassLoader() == ClassLoader.getSystemClassLoader()) {
      Thread.currentThread().setContextClassLoader(ClassLoader.getSystemClassLoader());
    }
    // The launcher calls main through JNI, which checks no access: a public main of a class
    // that is not public runs. Both classes are in the class path's unnamed module.
    method.setAccessible(true);
    text = null;
    header = null;
    try {
      method.invoke(null, (Object) args);
    } catch (InvocationTargetException e) {
      throw withoutBootstrapFrames(e.getCause());
    } catch (ExceptionInInitializerError e) {
      throw withoutBootstrapFrames(e);
    }
  }

  // What every run does the first time in a JVM, done once ahead of it: the JDK loads, links and
  // initialises its classes for jars, class loading from a jar, NIO files, reflection, encoding
  // and stack traces on first use (~25 ms of a run otherwise). On a jar of this bootstrap's own
  // classes in a folder under /tmp that is deleted again, through a class loader that is then
  // dropped, and on streams that write nowhere: nothing of it is left for the run to see.
  private static void prime() throws Exception {
    Path dir = Files.createTempDirectory(Path.of("/tmp"), "polyrun-warm");
    try {
      Path jar = dir.resolve("sub/prime.jar");
      Files.createDirectories(jar.getParent());
      // Entries with a local time of their own: a zip entry's default time is the clock in the
      // default zone, and the zone rules are looked up with ServiceLoader on the system class
      // loader, which would open /work/main.jar before it exists and never look again.
      String entry = "polyrun/Warm$Json.class";
      LocalDateTime time = LocalDateTime.of(2000, 1, 1, 0, 0);
      try (InputStream in = Warm.class.getResourceAsStream("/" + entry);
           ZipOutputStream out = new ZipOutputStream(Files.newOutputStream(jar))) {
        ZipEntry meta = new ZipEntry("META-INF/MANIFEST.MF");
        meta.setTimeLocal(time);
        out.putNextEntry(meta);
        out.write("Manifest-Version: 1.0\r\nMain-Class: polyrun.Warm$Json\r\n\r\n".getBytes(UTF_8));
        ZipEntry json = new ZipEntry(entry);
        json.setTimeLocal(time);
        out.putNextEntry(json);
        in.transferTo(out);
      }
      Files.setPosixFilePermissions(jar, PosixFilePermissions.fromString("rw-r--r--"));
      String name;
      try (JarFile file = new JarFile(jar.toFile())) {
        name = file.getManifest().getMainAttributes().getValue("Main-Class");
      }
      try (URLClassLoader loader = new URLClassLoader(
               new URL[] {jar.toUri().toURL()}, ClassLoader.getPlatformClassLoader())) {
        Class.forName(name, true, loader);  // read from the jar, defined, verified, initialised
      }
      Warm.class.getDeclaredMethod("primed", String[].class).invoke(null, (Object) new String[0]);
      new Json("{\"a\": [\"\\u00e9\", 1, true]}".getBytes(UTF_8)).value();
      PrintStream nowhere = new PrintStream(OutputStream.nullOutputStream(), true, UTF_8);
      nowhere.println("polyrun " + 1);
      new IllegalStateException("primed", new RuntimeException()).printStackTrace(nowhere);
    } finally {
      try (var paths = Files.walk(dir)) {
        for (Path p : paths.sorted(Comparator.reverseOrder()).toList()) Files.delete(p);
      }
    }
  }

  @SuppressWarnings("unused")
  private static void primed(String[] args) {}

  // Through the system class loader, which finds it in /work/main.jar as `-jar` would. Should
  // the loader have looked for main.jar before the run brought it (it then never looks again;
  // prime() takes care that nothing does), through a loader of main.jar under it instead, and
  // the run still runs.
  private static Class<?> load(String name) throws ClassNotFoundException, IOException {
    try {
      return Class.forName(name, false, ClassLoader.getSystemClassLoader());
    } catch (ClassNotFoundException e) {
      URLClassLoader jar = new URLClassLoader(new URL[] {Path.of("/work/main.jar").toUri().toURL()});
      Thread.currentThread().setContextClassLoader(jar);
      return Class.forName(name, false, jar);
    }
  }

  private static void launcherError(String what) {
    System.err.println("Error: " + what);
    System.exit(1);
  }

  private static byte[] readExact(int n) throws IOException {
    byte[] out = new byte[n];
    for (int off = 0; off < n; ) {
      int got = STDIN.read(out, off, n - off);
      if (got < 0) throw new EOFException("polyrun warm: stdin ended inside the run");
      off += got;
    }
    return out;
  }

  // Java cannot close a descriptor it did not open: a FileDescriptor set to 3 through
  // sun.misc.Unsafe (jdk.unsupported, open to every module) and closed by its stream. If that
  // fails, fd 3 stays open: the write end of a pipe whose reader is gone.
  private static void closeFd3() {
    try {
      // Through reflection: naming sun.misc.Unsafe in the source makes javac warn on every build.
      Class<?> type = Class.forName("sun.misc.Unsafe");
      Field field = type.getDeclaredField("theUnsafe");
      field.setAccessible(true);
      Object unsafe = field.get(null);
      long offset = (long) type.getMethod("objectFieldOffset", Field.class)
                        .invoke(unsafe, FileDescriptor.class.getDeclaredField("fd"));
      FileDescriptor fd = new FileDescriptor();
      type.getMethod("putInt", Object.class, long.class, int.class).invoke(unsafe, fd, offset, 3);
      new FileOutputStream(fd).close();
    } catch (ReflectiveOperationException | IOException | RuntimeException e) {
      // Left open, as said above.
    }
  }

  // The program's exception (and each of its causes and suppressed ones) without the frames of
  // the reflective call that ran it, which lie below its own: its trace is then what the JVM
  // prints for `java -jar`, "... n more" lines included.
  private static Throwable withoutBootstrapFrames(Throwable top) {
    Map<Throwable, Boolean> seen = new IdentityHashMap<>();
    List<Throwable> todo = new ArrayList<>(List.of(top));
    while (!todo.isEmpty()) {
      Throwable t = todo.remove(todo.size() - 1);
      if (seen.put(t, true) != null) continue;
      StackTraceElement[] trace = t.getStackTrace();
      int end = trace.length;
      if (end > 0 && trace[end - 1].getClassName().equals(Warm.class.getName())) {
        end--;
        while (end > 0 && isReflection(trace[end - 1].getClassName())) end--;
        t.setStackTrace(java.util.Arrays.copyOf(trace, end));
      }
      if (t.getCause() != null) todo.add(t.getCause());
      todo.addAll(List.of(t.getSuppressed()));
    }
    return top;
  }

  private static boolean isReflection(String className) {
    return className.startsWith("jdk.internal.reflect.")
        || className.startsWith("java.lang.reflect.")
        || className.startsWith("java.lang.invoke.");
  }

  // The header's JSON, as the engine writes it: objects, arrays, strings, integers, booleans.
  private static final class Json {
    private final byte[] text;
    private int pos;

    Json(byte[] text) {
      this.text = text;
    }

    Object value() {
      skip();
      byte c = peek();
      if (c == '"') return string();
      if (c == '{') {
        Map<String, Object> object = new LinkedHashMap<>();
        items('}', () -> {
          String key = string();
          expect(':');
          object.put(key, value());
        });
        return object;
      }
      if (c == '[') {
        List<Object> array = new ArrayList<>();
        items(']', () -> array.add(value()));
        return array;
      }
      int start = pos;
      while (pos < text.length && "-0123456789truefalsn".indexOf(text[pos]) >= 0) pos++;
      String word = new String(text, start, pos - start, StandardCharsets.US_ASCII);
      switch (word) {
        case "true": return Boolean.TRUE;
        case "false": return Boolean.FALSE;
        case "null": return null;
        default:
          try {
            return Long.parseLong(word);
          } catch (NumberFormatException e) {
            throw new IllegalArgumentException("polyrun warm: bad header at byte " + start);
          }
      }
    }

    private void items(char close, Runnable item) {
      pos++;
      skip();
      if (peek() == close) {
        pos++;
        return;
      }
      for (;;) {
        item.run();
        skip();
        byte sep = peek();
        pos++;
        if (sep == close) return;
        if (sep != ',') throw new IllegalArgumentException("polyrun warm: bad header at byte " + pos);
      }
    }

    private String string() {
      expect('"');
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      for (;;) {
        if (pos >= text.length) throw new IllegalArgumentException("polyrun warm: unterminated string");
        byte b = text[pos++];
        if (b == '"') break;
        if (b != '\\') {
          out.write(b);
          continue;
        }
        byte e = text[pos++];
        if (e == 'u') {
          int cp = hex4(pos);
          pos += 4;
          // A character beyond the BMP arrives as a surrogate pair: two escapes.
          if (Character.isHighSurrogate((char) cp) && pos + 6 <= text.length && text[pos] == '\\'
              && text[pos + 1] == 'u') {
            cp = Character.toCodePoint((char) cp, (char) hex4(pos + 2));
            pos += 6;
          }
          byte[] utf8 = new String(Character.toChars(cp)).getBytes(StandardCharsets.UTF_8);
          out.write(utf8, 0, utf8.length);
        } else {
          int i = "bfnrt".indexOf(e);
          out.write(i >= 0 ? "\b\f\n\r\t".charAt(i) : e);
        }
      }
      return out.toString(StandardCharsets.UTF_8);
    }

    private int hex4(int at) {
      return Integer.parseInt(new String(text, at, 4, StandardCharsets.US_ASCII), 16);
    }

    private void expect(char c) {
      skip();
      if (peek() != c) throw new IllegalArgumentException("polyrun warm: bad header at byte " + pos);
      pos++;
    }

    private byte peek() {
      return pos < text.length ? text[pos] : 0;
    }

    private void skip() {
      while (pos < text.length && " \t\r\n".indexOf(text[pos]) >= 0) pos++;
    }
  }
}
