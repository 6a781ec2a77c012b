# polyrun's warm bootstrap for Ruby (docs/performance.md, "Warm pools").
#
# Started ahead of need in a fresh sandbox with [run]'s command, environment and limits, so
# RubyGems, did_you_mean and error_highlight are loaded as in a cold run (~35 ms of its start).
# Once up it writes "R" on fd 3 and closes it, then reads one run from stdin: a line with the
# byte length of a JSON header, the header {"entry", "args", "files": [{"name", "size",
# "executable"}]}, the files' bytes in that order, and then the program's own stdin. It writes
# the files into /work and runs the entry as `ruby ENTRY ARGS` would: compiled from its file as
# the main script (frames say `<main>`, error_highlight finds its source), $0 and ARGV the
# entry's, DATA after __END__, and an uncaught error reported without this file's frames.
#
# Nothing here may change what the program sees: no library is loaded (the header is parsed
# below, not with json, which would add #to_json to every object), no method or constant is
# defined, and stdin is read unbuffered (sysread) so that $stdin starts at the program's stdin.

ready = IO.for_fd(3, autoclose: true)
ready.syswrite("R")
ready.close

read_exact = lambda do |n|
  data = "".b
  while data.bytesize < n
    data << $stdin.sysread(n - data.bytesize)
  end
  data
rescue EOFError
  raise EOFError, "polyrun warm: stdin ended inside the run's header"
end

length = "".b
until (byte = $stdin.sysread(1)) == "\n"
  length << byte
end

# The header's JSON (as the engine writes it: objects, arrays, strings, integers, booleans).
text = read_exact.call(Integer(length, 10))
pos = 0
skip = -> { pos += 1 while pos < text.bytesize && " \t\r\n".include?(text[pos]) }
expect = lambda do |char|
  skip.call
  raise ArgumentError, "polyrun warm: bad header at byte #{pos}" unless text[pos] == char
  pos += 1
end
string = lambda do
  expect.call('"')
  out = "".b
  loop do
    c = text[pos]
    pos += 1
    case c
    when '"' then break
    when "\\"
      e = text[pos]
      pos += 1
      if e == "u"
        cp = Integer(text[pos, 4], 16)
        pos += 4
        if cp.between?(0xD800, 0xDBFF) && text[pos, 2] == "\\u"
          cp = 0x10000 + ((cp - 0xD800) << 10) + (Integer(text[pos + 2, 4], 16) - 0xDC00)
          pos += 6
        end
        out << [cp].pack("U").b
      else
        out << ({ "b" => "\b", "f" => "\f", "n" => "\n", "r" => "\r", "t" => "\t" }[e] || e)
      end
    when nil then raise ArgumentError, "polyrun warm: unterminated string in the header"
    else out << c
    end
  end
  out.force_encoding(Encoding::UTF_8)
end
# The items of an object or array up to `close`, each read by the block.
items = lambda do |close, &item|
  pos += 1
  skip.call
  if text[pos] == close
    pos += 1
    return
  end
  loop do
    item.call
    skip.call
    pos += 1
    break if text[pos - 1] == close
    raise ArgumentError, "polyrun warm: bad header at byte #{pos}" unless text[pos - 1] == ","
  end
end
value = nil
value = lambda do
  skip.call
  case text[pos]
  when '"' then string.call
  when "{"
    object = {}
    items.call("}") do
      key = string.call
      expect.call(":")
      object[key] = value.call
    end
    object
  when "["
    array = []
    items.call("]") { array << value.call }
    array
  else
    word = /\G(?:true|false|null|-?\d+)/.match(text, pos)&.[](0)
    raise ArgumentError, "polyrun warm: bad header at byte #{pos}" if word.nil?
    pos += word.size
    { "true" => true, "false" => false, "null" => nil }.fetch(word) { Integer(word, 10) }
  end
end
header = value.call

header["files"].each do |f|
  path = File.join("/work", f["name"])
  dir = File.dirname(path)
  parents = []
  until dir == "/work" || File.directory?(dir)
    parents.unshift(dir)
    dir = File.dirname(dir)
  end
  parents.each { |d| Dir.mkdir(d) }
  File.open(path, File::WRONLY | File::CREAT | File::EXCL | File::BINARY,
            f["executable"] ? 0o755 : 0o644) do |out|
    out.syswrite(read_exact.call(f["size"]))
  end
end

entry = header["entry"]
$0 = entry
ARGV.replace(header["args"])
own = __FILE__
main = begin
  RubyVM::InstructionSequence.compile_file(entry)
rescue SyntaxError => e
  # As `ruby ENTRY` reports a syntax error in its script: the message alone.
  $stderr.write(e.message, e.message.end_with?("\n") ? "" : "\n")
  exit 1
end
source = File.binread(entry)
if (at = source =~ /^__END__\r?\n/)
  data = File.open(entry)
  data.seek(at + source[at..][/\A__END__\r?\n/].bytesize)
  Object.const_set(:DATA, data)
end
text = length = header = source = nil
begin
  main.eval
rescue Exception => e # whatever it is, reported as the interpreter would
  # Reported by Ruby itself (at_exit handlers first, then the report, exit status 1, or the
  # signal or exit status it stands for), with only the program's own frames, in the error and
  # in each of its causes (the report prints theirs too).
  seen = {}
  cause = e
  while cause && !seen[cause.__id__]
    seen[cause.__id__] = true
    bt = cause.backtrace
    cut = bt&.index { |l| l.start_with?("#{own}:") }
    begin
      cause.set_backtrace(bt[0...cut]) if cut
    rescue FrozenError
      nil
    end
    cause = cause.cause
  end
  raise
end
