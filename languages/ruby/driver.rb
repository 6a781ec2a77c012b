# polyrun's Ruby session driver: docs/sessions.md (protocol version 1). Commands arrive as JSON
# lines on a private copy of fd 0, frames leave on fd 3, the user's output goes to fds 1 and 2.
#
# Cells run in TOPLEVEL_BINDING, so local variables, methods and constants persist. A cell's
# value is its result (inspect, plus to_html/to_svg/to_png/to_markdown when the value has
# them) unless it is nil or the cell ends in ";". Polyrun.display(obj[, mime]) shows a value
# on the spot. gets/STDIN/$stdin/ARGF reads ask the host for input lines.
#
# Started with --disable-gems (about 20 ms to ready instead of 85): RubyGems loads itself the
# first time something needs it, see Kernel#require below.
require "json"
begin
  require "did_you_mean" # loaded by RubyGems' prelude normally; "Did you mean?" in NameErrors
rescue LoadError
  nil
end

module Kernel
  alias_method :polyrun_plain_require, :require
  private :polyrun_plain_require

  # A require that fails before RubyGems is loaded loads it and tries again, so bundled and
  # installed gems (prime, matrix, /var/lib/gems …) work as in a plain `ruby`. Once loaded,
  # RubyGems wraps this method as its gem_original_require.
  private def require(path)
    polyrun_plain_require(path)
  rescue LoadError
    raise if Polyrun.gems_tried
    Polyrun.gems_tried = true
    polyrun_plain_require("rubygems")
    require(path)
  end

  # Kernel#gem comes with RubyGems, which redefines it when it loads.
  private def gem(*args, **kw)
    require "rubygems"
    gem(*args, **kw)
  end

  # Kernel#gets reads through ARGF, which reads the real STDIN in C, past $stdin's hooks. (These
  # do not set the caller's $_, which only C methods can.)
  private def gets(*args) = ARGV.empty? ? $stdin.gets(*args) : ARGF.gets(*args)
  private def readline(*args) = ARGV.empty? ? $stdin.readline(*args) : ARGF.readline(*args)
  private def readlines(*args) = ARGV.empty? ? $stdin.readlines(*args) : ARGF.readlines(*args)
end
Object.autoload(:Gem, "rubygems")

# The user-facing helpers; the driver's internals live in Polyrun::Driver.
module Polyrun
  class << self
    attr_accessor :gems_tried

    # Sends a display frame: with a MIME type, obj is that type's content (bytes for images,
    # base64-encoded here); without, the MIME bundle of obj (see Driver.bundle).
    def display(obj, mime = nil)
      data = mime ? { "text/plain" => Driver.clip(Driver.text(obj.inspect)), mime => Driver.encode(mime, obj) } : Driver.bundle(obj)
      Driver.frame(type: "display", data: data, metadata: {})
      nil
    end
  end

  # STDIN's reads ask the host for input (input_request). A line from input_reply becomes
  # "line\n"; input_reply's eof makes the read see end of file. Extends the real STDIN (fd 0 is
  # /dev/null, so subprocesses read nothing), keeping STDIN an IO.
  module InputHooks
    def gets(sep = $/, limit = nil, chomp: false)
      sep, limit = nil, sep if sep.is_a?(Integer)
      line = take_line(sep, limit)
      line = line.chomp(sep || "") if line && chomp
      line
    end

    def readline(*args, **kw) = gets(*args, **kw) || raise(EOFError, "end of file reached")

    def readlines(*args, **kw)
      lines = []
      while (l = gets(*args, **kw))
        lines << l
      end
      lines
    end

    def each_line(*args, **kw)
      return enum_for(:each_line, *args, **kw) unless block_given?

      while (l = gets(*args, **kw))
        yield l
      end
      self
    end

    def read(length = nil, outbuf = nil)
      buf = input_buffer
      fill until @polyrun_eof || (length && buf.bytesize >= length)
      return(length.zero? ? +"" : nil) if length && buf.empty?

      s = length ? buf.byteslice(0, length) : buf.dup
      buf.replace(buf.byteslice(s.bytesize..) || "")
      outbuf ? outbuf.replace(s) : s
    end

    def readpartial(maxlen, outbuf = nil)
      fill if input_buffer.empty?
      read([maxlen, [input_buffer.bytesize, 1].max].min, outbuf) || raise(EOFError, "end of file reached")
    end

    def getc
      fill if input_buffer.empty?
      c = input_buffer[0]
      input_buffer.replace(input_buffer[1..] || "") if c
      c
    end

    def eof?
      fill if input_buffer.empty?
      input_buffer.empty?
    end
    alias_method :eof, :eof?

    # Each cell starts with nothing buffered and no end of file seen: an eof reply ends only
    # the reads of the cell that got it.
    def polyrun_reset_input
      @polyrun_buf = nil
      @polyrun_eof = false
    end

    private

    def input_buffer = (@polyrun_buf ||= String.new(encoding: Encoding::UTF_8))

    # Asks the host for one line; false once the host said end of file.
    def fill
      return false if @polyrun_eof

      reply = Driver.request_input
      if reply.nil?
        @polyrun_eof = true
        return false
      end
      input_buffer << reply << "\n"
      true
    end

    def take_line(sep, limit)
      buf = input_buffer
      loop do
        idx = sep.nil? ? nil : buf.index(sep.empty? ? "\n\n" : sep)
        stop = idx && idx + (sep.empty? ? 2 : sep.size)
        stop = limit if limit && (stop.nil? || stop > limit) && buf.size >= limit
        if stop || (@polyrun_eof && !buf.empty?)
          line = buf[0, stop || buf.size]
          buf.replace(buf[line.size..] || "")
          return line
        end
        return nil unless fill
      end
    end
  end

  # ARGF ($<) with no file arguments reads $stdin, but in C; these go through its hooks instead.
  module ArgfHooks
    %i[gets readline readlines each_line read eof? eof getc].each do |name|
      define_method(name) { |*args, **kw, &blk| ARGV.empty? ? $stdin.public_send(name, *args, **kw, &blk) : super(*args, **kw, &blk) }
    end
  end

  # The protocol side. Holds no state in the cells' binding: TOPLEVEL_BINDING shares the main
  # script's local variables, so this file defines none at its top level.
  module Driver
    CELL_FILE = /\A<cell \d+>\z/
    BINARY_MIME = %r{\A(?:image/(?!svg)|application/(?:pdf|octet-stream))}
    # Methods that turn an object into a rich representation, as IRuby does.
    RICH = { to_html: "text/html", to_svg: "image/svg+xml", to_png: "image/png", to_markdown: "text/markdown" }.freeze
    TEXT_LIMIT = 1 << 20

    class << self
      def main
        # Commands move to a close-on-exec copy of fd 0 (Ruby's dup sets FD_CLOEXEC); fd 0
        # becomes /dev/null for user code and its subprocesses.
        @commands = STDIN.dup
        STDIN.reopen(File::NULL)
        STDIN.extend(InputHooks)
        ARGF.singleton_class.prepend(ArgfHooks)
        @frames = IO.for_fd(3, autoclose: false)
        @frames.close_on_exec = true
        @frames.sync = true
        @binding = TOPLEVEL_BINDING
        @count = 0
        @busy = false
        install_trap
        start_flusher
        frame(type: "ready")
        while (line = @commands.gets)
          handle(line)
        end
        flush_output
        exit!(0) # EOF: skip the at_exit hooks and finalizers user code registered
      end

      # STDOUT stays buffered (sync costs 4x on many small writes); while a cell runs, this
      # thread flushes it every 25 ms so progress output shows up live. A cell that never
      # blocks holds the GVL for up to Ruby's 100 ms time slice.
      def start_flusher
        @cell_started = Queue.new
        Thread.new do
          loop do
            @cell_started.pop
            while @busy
              sleep 0.025
              flush_output
            end
          end
        end
      end

      def handle(line)
        cmd = JSON.parse(line)
        case cmd["type"]
        when "execute" then execute(cmd["id"], cmd["code"].to_s)
        when "complete" then complete(cmd["id"], cmd["code"].to_s, cmd["cursor_pos"] || cmd["code"].to_s.size)
        when "is_complete" then frame(type: "is_complete_reply", id: cmd["id"], **is_complete(cmd["code"].to_s))
        when "inspect" then frame(type: "inspect_reply", id: cmd["id"], **inspect_at(cmd["code"].to_s, cmd["cursor_pos"] || 0))
        when "input_reply" then nil # an answer that arrived after its cell was interrupted
        else frame(type: "protocol_error", message: "unknown command #{cmd['type'].inspect}")
        end
      rescue JSON::ParserError, NoMethodError, TypeError => e
        frame(type: "protocol_error", message: "bad command: #{text(e.message)}")
      end

      # SIGINT raises Interrupt in the cell while one runs and is ignored otherwise. Reinstalled
      # after every cell in case user code trapped INT itself.
      def install_trap
        @trap ||= proc { raise Interrupt if @busy }
        trap("INT", @trap)
      end

      def execute(id, code)
        @count += 1
        file = "<cell #{@count}>"
        status = "ok"
        STDIN.polyrun_reset_input
        begin
          begin
            @busy = true
            @cell_started << true
            value = eval(code, @binding, file, 1)
          ensure
            @busy = false
          end
          frame(type: "result", data: bundle(value)) unless value.nil? || code.rstrip.end_with?(";")
        rescue Interrupt => e
          status = "interrupted"
          error_frame(e, file)
        rescue Exception => e # SystemExit, ScriptError…: all are the cell's
          status = "error"
          error_frame(e, file)
        end
        install_trap
        frame(type: "done", id: id, status: status)
      end

      def error_frame(exc, file)
        cells = (exc.backtrace || []).select { |f| f.split(":", 2)[0].match?(CELL_FILE) }
        here = cells.find { |f| f.start_with?("#{file}:") }
        message = exc.message.to_s
        line = here && here[/\A[^:]*:(\d+)/, 1]&.to_i
        if exc.is_a?(SyntaxError)
          # "<cell 3>:2: syntax error, unexpected …" (and the snippet): the position is in the text.
          line = message[/\A#{Regexp.escape(file)}:(\d+):/, 1]&.to_i
          message = message.gsub(/^#{Regexp.escape(file)}:\d+: /, "")
        end
        frame(type: "error", name: exc.class.name || exc.class.inspect, message: clip(text(message)), line: line,
              column: nil, traceback: cells.reverse.map { |f| text(f) })
      rescue Exception => e # a broken #message must not lose the done frame
        frame(type: "error", name: "Exception", message: "(error report failed: #{text(e.class.name)})",
              line: nil, column: nil, traceback: [])
      end

      # The MIME bundle of a value: its inspect, plus what its to_html/to_svg/… give.
      def bundle(obj)
        data = { "text/plain" => clip(text(obj.inspect)) }
        RICH.each do |meth, mime|
          next unless obj.respond_to?(meth)

          v = obj.public_send(meth)
          data[mime] = encode(mime, v) if v
        rescue StandardError
          nil
        end
        data
      end

      def encode(mime, value)
        s = value.to_s
        mime.match?(BINARY_MIME) ? [s].pack("m0") : text(s)
      end

      # Text shown for a value or an error: the host ends the session on a frame over 32 MiB.
      def clip(str)
        return str if str.bytesize <= TEXT_LIMIT

        "#{str.byteslice(0, TEXT_LIMIT).scrub('')}… (#{str.bytesize - TEXT_LIMIT} more bytes)"
      end

      # Valid UTF-8 for JSON: user strings can hold any bytes.
      def text(str)
        s = str.to_s
        s.encoding == Encoding::UTF_8 && s.valid_encoding? ? s : s.dup.force_encoding(Encoding::UTF_8).scrub
      end

      # Writes one frame, after the user's buffered output (docs/sessions.md: ordering).
      def frame(obj)
        flush_output
        @frames.write(JSON.generate(obj) << "\n")
      end

      def flush_output
        [STDOUT, STDERR, $stdout, $stderr].uniq.each { |io| io.flush if io.respond_to?(:flush) }
      rescue StandardError
        nil
      end

      # Blocks for input_reply; the line, or nil for end of file.
      def request_input
        frame(type: "input_request", prompt: "", password: false)
        while (line = @commands.gets)
          cmd = JSON.parse(line) rescue nil
          next frame(type: "protocol_error", message: "expected input_reply") unless cmd.is_a?(Hash) && cmd["type"] == "input_reply"
          return cmd["eof"] ? nil : cmd["value"].to_s
        end
        flush_output
        exit!(0) # the host closed the command channel mid-cell
      end

      def is_complete(code)
        verbose, $VERBOSE = $VERBOSE, nil # no parse warnings on stderr between cells
        RubyVM::InstructionSequence.compile(code)
        { status: "complete", indent: "" }
      rescue SyntaxError => e
        if e.message.match?(/unterminated .* meets end of file|anywhere before EOF/)
          { status: "incomplete", indent: "" } # inside a string: no indent to suggest
        elsif e.message.match?(/end-of-input|meets end of file/)
          { status: "incomplete", indent: "#{code.lines.last.to_s[/\A[ \t]*/]}  " }
        else
          { status: "invalid", indent: "" }
        end
      ensure
        $VERBOSE = verbose
      end

      # Completes the name before the cursor: `recv.pre` (recv a local or constant path),
      # `Const::Pre`, `@ivar`, `$global`, or a bare prefix (locals, methods, constants, keywords).
      def complete(id, code, cursor)
        before = code[0, cursor].to_s
        m = before.match(/(?:([A-Za-z_][\w]*(?:::[A-Z]\w*)*)(\.|::))?([$@]{0,2}\w*[?!]?)\z/)
        recv, op, prefix = m[1], m[2], m[3]
        names =
          if recv
            obj = lookup(recv)
            if obj.equal?(NONE) then []
            elsif op == "::" && obj.is_a?(Module) then obj.constants.map(&:to_s) + obj.public_methods.map(&:to_s)
            else obj.public_methods.map(&:to_s)
            end
          elsif prefix.start_with?("$") then global_variables.map(&:to_s)
          elsif prefix.start_with?("@") then @binding.receiver.instance_variables.map(&:to_s)
          else
            @binding.local_variables.map(&:to_s) + @binding.receiver.methods.map(&:to_s) +
              @binding.receiver.private_methods.map(&:to_s) + Object.constants.map(&:to_s) + KEYWORDS
          end
        matches = names.select { |n| n.start_with?(prefix) }.uniq.sort
        frame(type: "complete_reply", id: id, matches: matches, cursor_start: cursor - prefix.size, cursor_end: cursor)
      rescue StandardError
        frame(type: "complete_reply", id: id, matches: [], cursor_start: cursor, cursor_end: cursor)
      end

      KEYWORDS = %w[BEGIN END alias and begin break case class def defined? do else elsif end ensure false
                    for if in module next nil not or redo rescue retry return self super then true undef
                    unless until when while yield].freeze
      NONE = Object.new.freeze

      # A local variable or a constant path, without running anything else.
      def lookup(name)
        return @binding.local_variable_get(name) if name.match?(/\A[a-z_]\w*\z/) && @binding.local_variable_defined?(name)
        return Object.const_get(name) if name.match?(/\A[A-Z]/)

        NONE
      rescue NameError
        NONE
      end

      # The local, constant or method named at the cursor: its class and value, or its signature.
      def inspect_at(code, cursor)
        name = code[0, cursor].to_s[/[\w:]*[?!]?\z/].to_s + code[cursor..].to_s[/\A\w*[?!]?/].to_s
        obj = lookup(name)
        return { found: true, data: { "text/plain" => clip(text("#{obj.class}: #{obj.inspect}")) } } unless obj.equal?(NONE)

        meth = @binding.receiver.method(name)
        params = meth.parameters.map { |kind, n| kind.to_s + (n ? " #{n}" : "") }
        { found: true, data: { "text/plain" => text("#{meth.owner}##{meth.name}(#{params.join(', ')})") } }
      rescue StandardError
        { found: false, data: {} }
      end
    end
  end
end

Polyrun::Driver.main
