# polyrun check for Ruby: parses the file with Ripper (Ruby's own parser) and never runs it.
# Prints the check protocol (docs/languages.md): syntax_error and import records, TAB-separated.
require "ripper"

# Ripper's sexp builder, also collecting every error the parser reports, not just the first.
class CheckParser < Ripper::SexpBuilderPP
  attr_reader :errors

  def initialize(*)
    super
    @errors = []
  end

  def on_parse_error(msg)
    @errors << [lineno, column, msg]
    super
  end

  # Errors Ruby also refuses at parse time ("Can't change the value of self", …): Ripper hands
  # them to the sexp as nodes, the interpreter stops on them.
  def on_assign_error(msg, *rest)
    @errors << [lineno, column, msg.is_a?(String) ? msg : "can't assign"]
    super
  end

  def on_alias_error(msg, *rest)
    @errors << [lineno, column, msg.is_a?(String) ? msg : "can't make alias"]
    super
  end

  def on_class_name_error(msg, *rest)
    @errors << [lineno, column, msg.is_a?(String) ? msg : "class/module name must be CONSTANT"]
    super
  end

  def on_param_error(msg, *rest)
    @errors << [lineno, column, msg.is_a?(String) ? msg : "invalid parameter"]
    super
  end
end

def field(s) = s.to_s.tr("\t\n\r", "   ")

def record(*fields) = puts(fields.map { |f| field(f) }.join("\t"))

# "require 'x'", "require('x')", "autoload :X, 'x'": the method name, its line and the literal
# string arguments (nil for anything computed, e.g. interpolation).
def call_of(node)
  case node
  in [:command, [:@ident, name, [line, _]], args]
    [name, line, args]
  in [:method_add_arg, [:fcall, [:@ident, name, [line, _]]], [:arg_paren, args]]
    [name, line, args]
  else
    nil
  end
end

def literal_args(args)
  args = args[1] if args in [:args_add_block, *]
  return [] unless args.is_a?(Array)
  args.map do |a|
    case a
    in [:string_literal, [:string_content, [:@tstring_content, String => text, _]]] then text
    else nil
    end
  end
end

def each_import(node, &block)
  return unless node.is_a?(Array)
  if (call = call_of(node))
    name, line, args = call
    strings = literal_args(args)
    case name
    when "require", "require_relative", "load"
      yield name, strings[0], line if strings.size == 1 && strings[0]
    when "autoload"
      yield "require", strings[1], line if strings.size == 2 && strings[1]
    end
  end
  node.each { |child| each_import(child, &block) }
end

def file_exists?(path)
  [path, "#{path}.rb", "#{path}.so"].any? { |p| File.file?(p) }
end

# Resolves like the interpreter would, without loading anything: the user's files, then
# $LOAD_PATH (stdlib, Debian's vendor_ruby), then installed gems (bundled gems like prime).
def available?(kind, name, dir)
  return file_exists?(File.expand_path(name, dir)) if kind == "require_relative"
  return file_exists?(File.expand_path(name)) if name.start_with?("/", "./", "../")
  return true if kind == "load" && File.file?(name)
  return true if $LOAD_PATH.resolve_feature_path(name)
  require "rubygems" # only now: the check runs with --disable-gems to start faster
  return true if Gem::Specification.find_by_path(name)
  # A file of the user's own, reachable once the program puts its folder on $LOAD_PATH.
  file_exists?(File.expand_path(name, dir)) || file_exists?(File.expand_path(name))
rescue LoadError
  false
end

path = ARGV.fetch(0)
shown = path.delete_prefix("#{Dir.pwd}/")
src = File.binread(path).force_encoding(Encoding::UTF_8)
lines = src.lines
parser = CheckParser.new(src, shown)
tree = parser.parse

parser.errors.uniq.each do |line, byte_col, msg|
  # Ripper's column is a 0-based byte offset; the protocol wants a 1-based character column.
  text = lines[line - 1] || ""
  col = text.byteslice(0, byte_col).to_s.scrub.length + 1
  record("syntax_error", shown, line, col, msg)
end

dir = File.dirname(File.expand_path(path))
each_import(tree) do |kind, name, line|
  record("import", name, line, available?(kind, name, dir) ? 1 : 0)
end
