// polyrun's analyzer for Java (the check protocol of docs/languages.md), run by the source
// launcher: `java Check.java ENTRY [SOURCES...]`. It only parses, with javac's own front end
// (JavacTask.parse): nothing of the user's is compiled to bytecode, let alone run.
//   syntax_error  FILE  LINE  COLUMN  MESSAGE   -- the parser's errors in ENTRY
//   import        NAME  LINE  AVAILABLE         -- ENTRY's imports, as written
// An import is available when it names a class or package of the JDK (javax.lang.model
// Elements, the modules a plain `java -jar` sees) or one declared in the user's sources.
import com.sun.source.tree.ClassTree;
import com.sun.source.tree.CompilationUnitTree;
import com.sun.source.tree.ImportTree;
import com.sun.source.tree.LineMap;
import com.sun.source.tree.Tree;
import com.sun.source.util.JavacTask;
import com.sun.source.util.SourcePositions;
import com.sun.source.util.Trees;
import java.io.File;
import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import javax.lang.model.util.Elements;
import javax.tools.Diagnostic;
import javax.tools.DiagnosticCollector;
import javax.tools.JavaCompiler;
import javax.tools.JavaFileObject;
import javax.tools.SimpleJavaFileObject;
import javax.tools.StandardJavaFileManager;
import javax.tools.ToolProvider;

public class Check {
  public static void main(String[] args) throws Exception {
    String entry = args[0];
    // The entry may also be among the sources: parse each file once.
    Set<String> files = new LinkedHashSet<>(List.of(args));
    JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
    DiagnosticCollector<JavaFileObject> diags = new DiagnosticCollector<>();
    StandardJavaFileManager fm = javac.getStandardFileManager(diags, Locale.ROOT, StandardCharsets.UTF_8);
    List<JavaFileObject> sources = new ArrayList<>();
    for (String f : files) sources.add(source(fm, f));
    JavacTask task = (JavacTask) javac.getTask(null, fm, diags,
        List.of("-proc:none", "-encoding", "UTF-8", "-Xmaxerrs", "1000"), null, sources);
    List<CompilationUnitTree> units = new ArrayList<>();
    task.parse().forEach(units::add);
    // Only the parser's diagnostics: looking names up below enters the trees, which may add
    // errors (duplicate classes, ...) that are not syntax errors.
    List<Diagnostic<? extends JavaFileObject>> parseErrors = new ArrayList<>(diags.getDiagnostics());

    File entryFile = new File(entry).getAbsoluteFile();
    CompilationUnitTree entryUnit = null;
    Set<String> userTypes = new HashSet<>(), userPackages = new HashSet<>();
    for (CompilationUnitTree unit : units) {
      if (new File(unit.getSourceFile().toUri()).getAbsoluteFile().equals(entryFile)) entryUnit = unit;
      String pkg = unit.getPackageName() == null ? "" : unit.getPackageName().toString();
      if (!pkg.isEmpty()) userPackages.add(pkg);
      for (Tree t : unit.getTypeDecls()) {
        if (t instanceof ClassTree c) addTypes(c, pkg.isEmpty() ? "" : pkg + ".", userTypes);
      }
    }

    for (Diagnostic<? extends JavaFileObject> d : parseErrors) {
      if (d.getKind() != Diagnostic.Kind.ERROR || d.getSource() == null) continue;
      if (!new File(d.getSource().toUri()).getAbsoluteFile().equals(entryFile)) continue;
      long line = d.getLineNumber();
      // javac's own column expands tabs to 8; count characters instead.
      long column = 0;
      if (entryUnit != null && d.getPosition() != Diagnostic.NOPOS && line > 0) {
        CharSequence text = entryUnit.getSourceFile().getCharContent(true);
        int start = (int) entryUnit.getLineMap().getStartPosition(line);
        int pos = (int) Math.min(d.getPosition(), text.length());
        column = Character.codePointCount(text, start, Math.max(start, pos)) + 1;
      }
      String message = d.getMessage(Locale.ROOT).split("\n", 2)[0];
      print("syntax_error", entry, Long.toString(Math.max(line, 0)), Long.toString(column), message);
    }

    if (entryUnit == null) return;
    Elements elements = task.getElements();
    SourcePositions positions = Trees.instance(task).getSourcePositions();
    LineMap lines = entryUnit.getLineMap();
    for (ImportTree imp : entryUnit.getImports()) {
      String name = imp.getQualifiedIdentifier().toString();
      long line = lines.getLineNumber(positions.getStartPosition(entryUnit, imp));
      boolean available = resolves(name, imp.isStatic(), elements, userTypes, userPackages);
      print("import", name, Long.toString(line), available ? "1" : "0");
    }
  }

  // javac takes only *.java files; a file told Java by its content (no extension) is read as one.
  static JavaFileObject source(StandardJavaFileManager fm, String name) {
    if (name.endsWith(".java")) return fm.getJavaFileObjects(name).iterator().next();
    File file = new File(name).getAbsoluteFile();
    return new SimpleJavaFileObject(URI.create(file.toURI() + ".java"), JavaFileObject.Kind.SOURCE) {
      @Override
      public URI toUri() {
        return file.toURI();
      }

      @Override
      public CharSequence getCharContent(boolean ignoreEncodingErrors) throws IOException {
        return Files.readString(file.toPath(), StandardCharsets.UTF_8);
      }
    };
  }

  // Records a class and its member classes by canonical name (a.b.Outer.Inner).
  static void addTypes(ClassTree c, String prefix, Set<String> out) {
    String name = prefix + c.getSimpleName();
    out.add(name);
    for (Tree member : c.getMembers()) {
      if (member instanceof ClassTree inner) addTypes(inner, name + ".", out);
    }
  }

  // `a.b.C` a type; `a.b.*` a package or a type; static `a.b.C.m` and `a.b.C.*` the type a.b.C.
  static boolean resolves(String name, boolean isStatic, Elements elements, Set<String> userTypes,
                          Set<String> userPackages) {
    boolean onDemand = name.endsWith(".*");
    String target = onDemand ? name.substring(0, name.length() - 2) : name;
    if (isStatic && !onDemand) {
      int dot = target.lastIndexOf('.');
      if (dot < 0) return false;
      target = target.substring(0, dot);
    }
    if (userTypes.contains(target) || type(elements, target)) return true;
    return onDemand && !isStatic && (userPackages.contains(target) || pkg(elements, target));
  }

  static boolean type(Elements elements, String name) {
    try {
      return elements.getTypeElement(name) != null;
    } catch (RuntimeException e) {  // completion failures on a broken classpath entry
      return false;
    }
  }

  static boolean pkg(Elements elements, String name) {
    try {
      return elements.getPackageElement(name) != null;
    } catch (RuntimeException e) {
      return false;
    }
  }

  static void print(String... fields) {
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < fields.length; i++) {
      if (i > 0) sb.append('\t');
      sb.append(fields[i].replace('\t', ' ').replace('\n', ' ').replace('\r', ' '));
    }
    System.out.println(sb);
  }
}
