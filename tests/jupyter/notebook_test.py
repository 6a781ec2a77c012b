"""Executes rich.ipynb on the polyrun-python kernel with nbclient, as Jupyter would, and checks
what the notebook then holds: stream text, an execute_result, a pandas DataFrame's HTML and a
matplotlib plot as image/png."""

import base64
import os
import unittest

import nbclient
import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))


class NotebookTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        nb = nbformat.read(os.path.join(HERE, "rich.ipynb"), as_version=4)
        client = nbclient.NotebookClient(
            nb, kernel_name="polyrun-python", timeout=120, startup_timeout=60
        )
        cls.nb = client.execute()
        cls.outputs = [c.outputs for c in cls.nb.cells]

    def test_print_is_a_stdout_stream(self):
        streams = [o for o in self.outputs[0] if o.output_type == "stream"]
        self.assertEqual([o.name for o in streams], ["stdout"] * len(streams))
        self.assertEqual("".join(o.text for o in streams), "hello from the sandbox\n")

    def test_last_expression_is_an_execute_result(self):
        (out,) = self.outputs[1]
        self.assertEqual(out.output_type, "execute_result")
        self.assertEqual(out.data["text/plain"], "42")
        self.assertEqual(out.execution_count, 2)

    def test_dataframe_has_html_and_text(self):
        (out,) = self.outputs[2]
        self.assertEqual(out.output_type, "execute_result")
        self.assertIn("<table", out.data["text/html"])
        self.assertIn("a  b", out.data["text/plain"])

    def test_plot_is_a_png_display(self):
        pngs = [
            o for o in self.outputs[3] if o.output_type == "display_data" and "image/png" in o.data
        ]
        self.assertEqual(len(pngs), 1)
        self.assertTrue(base64.b64decode(pngs[0].data["image/png"]).startswith(b"\x89PNG\r\n"))


if __name__ == "__main__":
    unittest.main()
