"""A kernel that is shut down leaves nothing of its session behind. xeus ends the kernel's
process right after the shutdown reply, so the kernel must have finished tearing its session's
sandbox down by then (its run cgroup used to be left behind about every other time)."""

import glob
import unittest

from jupyter_client.manager import start_new_kernel


def run_cgroups(pid):
    """The run cgroups polyrun process `pid` has made ("polyrun/run-<pid>-<n>"), in any hierarchy."""
    found = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            left, _, right = line.partition(" - ")
            if right.split(" ")[0] in ("cgroup", "cgroup2"):
                mount = left.split(" ")[4]
                found += glob.glob(f"{mount}/**/polyrun/run-{pid}-*", recursive=True)
    return found


class ShutdownTest(unittest.TestCase):
    def test_a_kernel_shut_down_leaves_no_run_cgroup(self):
        # Three kernels: one shutdown in two used to leak.
        for _ in range(3):
            km, kc = start_new_kernel(kernel_name="polyrun-python", startup_timeout=60)
            process = km.provisioner.process
            try:
                # A session holding memory takes some milliseconds to tear down: the window.
                reply = kc.execute_interactive("x = b'x' * (150 << 20)", timeout=60)
                self.assertEqual(reply["content"]["status"], "ok")
                self.assertNotEqual(run_cgroups(process.pid), [], "no run cgroup while it ran")
                km.request_shutdown()
                self.assertEqual(process.wait(30), 0)
            finally:
                kc.stop_channels()
                if process.poll() is None:
                    process.kill()
                    process.wait()
                km.cleanup_resources()
            self.assertEqual(run_cgroups(process.pid), [])


if __name__ == "__main__":
    unittest.main()
