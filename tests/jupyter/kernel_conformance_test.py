"""The Jupyter kernel conformance suite (jupyter_kernel_test) against polyrun's kernels.

Each class is one kernelspec, polyrun-<id>, found through $JUPYTER_PATH (ctest installs them
into the build tree first; see CMakeLists.txt). jupyter_kernel_test starts the kernel with
jupyter_client, drives it over ZeroMQ and validates every message against the v5 schema.
Its tests without a sample here (pager, clear_output) are skipped by the suite itself: no
polyrun driver has a pager or clear_output.
"""

import unittest

import jupyter_kernel_test


class PolyrunKernelTests(jupyter_kernel_test.KernelTests):
    # xeus' in-memory history answers all three kinds.
    supported_history_operations = ("tail", "range", "search")


class PythonKernelTests(PolyrunKernelTests):
    kernel_name = "polyrun-python"
    language_name = "python"
    file_extension = ".py"
    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('oops', file=sys.stderr)"
    completion_samples = [{"text": "zi", "matches": {"zip"}}]
    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n    return x\n"]
    incomplete_code_samples = ["for i in range(3):", "def f(x):", "x = (1 +"]
    invalid_code_samples = ["import = 7q"]
    code_generate_error = "raise ValueError('bad')"
    code_execute_result = [
        {"code": "1 + 2 + 3", "result": "6"},
        {"code": "'a' * 3", "result": "'aaa'"},
        {"code": "[1, 2][1]", "result": "2"},
    ]
    code_history_pattern = "1 + 2*"
    code_display_data = [
        {
            "code": "class Card:\n    def _repr_html_(self):\n        return '<b>card</b>'\n"
            "display(Card())",
            "mime": "text/html",
        },
        {
            "code": "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9]);",
            "mime": "image/png",
        },
    ]
    code_inspect_sample = "print"

    # Beyond the suite: what the kernel adds over a plain session.

    def run_cell(self, code, allow_stdin=False, on_stream=None, answer=None):
        """Executes `code`, answering one input request with `answer` when given; returns
        (reply content, iopub messages of this cell, input requests)."""
        self.flush_channels()
        msg_id = self.kc.execute(code, allow_stdin=allow_stdin)
        requests = []
        if answer is not None:
            requests.append(self.kc.get_stdin_msg(timeout=jupyter_kernel_test.TIMEOUT))
            self.kc.input(answer)
        outputs = []
        while True:
            msg = self.kc.get_iopub_msg(timeout=jupyter_kernel_test.TIMEOUT)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            outputs.append(msg)
            if on_stream and msg["msg_type"] == "stream":
                on_stream(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        reply = self.get_non_kernel_info_reply(timeout=jupyter_kernel_test.TIMEOUT)
        return reply["content"], outputs, requests

    def test_sigint_interrupts_the_cell_and_keeps_state(self):
        self.run_cell("kept = 41")
        interrupted = []

        def interrupt_once(msg):
            if "spinning" in msg["content"]["text"] and not interrupted:
                interrupted.append(True)
                self.km.interrupt_kernel()  # interrupt_mode "signal": SIGINT to the kernel

        reply, outputs, _ = self.run_cell(
            "print('spinning', flush=True)\nwhile True: pass", on_stream=interrupt_once
        )
        self.assertTrue(interrupted)
        self.assertEqual(reply["status"], "error")
        self.assertEqual(reply["ename"], "KeyboardInterrupt")
        self.assertIn("error", [m["msg_type"] for m in outputs])
        reply, outputs, _ = self.run_cell("kept + 1")
        self.assertEqual(reply["status"], "ok")
        results = [m for m in outputs if m["msg_type"] == "execute_result"]
        self.assertEqual(results[0]["content"]["data"]["text/plain"], "42")

    def test_input_goes_through_the_stdin_channel(self):
        reply, outputs, requests = self.run_cell(
            "name = input('Name? ')\nprint('hi', name)", allow_stdin=True, answer="Ada"
        )
        self.assertEqual(requests[0]["msg_type"], "input_request")
        self.assertEqual(requests[0]["content"]["prompt"], "Name? ")
        self.assertEqual(reply["status"], "ok")
        text = "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream")
        self.assertEqual(text, "hi Ada\n")

    def test_input_without_stdin_sees_end_of_file(self):
        reply, _, _ = self.run_cell("input('Name? ')")
        self.assertEqual(reply["status"], "error")
        self.assertEqual(reply["ename"], "EOFError")


class JavaScriptKernelTests(PolyrunKernelTests):
    kernel_name = "polyrun-javascript"
    language_name = "javascript"
    file_extension = ".js"
    code_hello_world = "console.log('hello, world')"
    code_stderr = "console.error('oops')"
    # Matches replace the text from cursor_start: after "Math." only the property name.
    completion_samples = [{"text": "Math.flo", "matches": {"floor"}}]
    complete_code_samples = ["1", "console.log('hello, world')"]
    incomplete_code_samples = ["function f(x) {", "let a = [1,"]
    invalid_code_samples = ["let = = 7q"]
    code_generate_error = "throw new RangeError('bad')"
    code_execute_result = [
        {"code": "1 + 2 + 3", "result": "6"},
        {"code": "'a'.repeat(3)", "result": "'aaa'"},
    ]
    code_history_pattern = "1 + 2*"
    code_display_data = [{"code": "display.html('<b>bold</b>')", "mime": "text/html"}]
    code_inspect_sample = "console"


class RubyKernelTests(PolyrunKernelTests):
    kernel_name = "polyrun-ruby"
    language_name = "ruby"
    file_extension = ".rb"
    code_hello_world = "puts 'hello, world'"
    code_stderr = "$stderr.puts 'oops'"
    complete_code_samples = ["1", "puts 'hello, world'"]
    incomplete_code_samples = ["def f(x)", "[1,"]
    code_generate_error = "raise ArgumentError, 'bad'"
    code_execute_result = [
        {"code": "1 + 2 + 3", "result": "6"},
        {"code": "'a' * 3", "result": '"aaa"'},
    ]
    code_history_pattern = "1 + 2*"
    code_display_data = [
        {"code": "Polyrun.display('<b>hi</b>', 'text/html')", "mime": "text/html"}
    ]


class LuaKernelTests(PolyrunKernelTests):
    kernel_name = "polyrun-lua"
    language_name = "lua"
    file_extension = ".lua"
    code_hello_world = "print('hello, world')"
    code_stderr = "io.stderr:write('oops\\n')"
    complete_code_samples = ["x = 1", "print('hello, world')"]
    incomplete_code_samples = ["for i = 1, 3 do", "function f(x)"]
    code_generate_error = "error('bad')"
    code_execute_result = [
        {"code": "1 + 2 + 3", "result": "6"},
        {"code": "string.rep('a', 3)", "result": '"aaa"'},
    ]
    code_history_pattern = "1 + 2*"
    code_display_data = [
        {"code": "polyrun.display('<b>hi</b>', 'text/html')", "mime": "text/html"}
    ]


class BashKernelTests(PolyrunKernelTests):
    kernel_name = "polyrun-bash"
    language_name = "bash"
    file_extension = ".sh"
    code_hello_world = "echo 'hello, world'"
    code_stderr = "echo oops >&2"
    completion_samples = [{"text": "ech", "matches": {"echo"}}]
    complete_code_samples = ["echo hi", "x=1"]
    incomplete_code_samples = ["for i in 1 2; do", "if true; then"]
    code_generate_error = "false"


if __name__ == "__main__":
    unittest.main()
