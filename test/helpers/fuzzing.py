"""What the hypothesis tests share: example counts that `make fuzz` scales, and ROS-valid text.

The profiles themselves (ci, fuzz, dev) are registered in test/conftest.py.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st

# A ROS `string` field travels as UTF-8 and ends at the first NUL (rcl keeps C strings): text
# with a lone surrogate ('\\ud800') cannot be encoded at all (rclpy and rosbags raise
# UnicodeEncodeError), and a NUL cuts it short. Only these characters round-trip.
ROS_CHARACTERS = st.characters(codec="utf-8", exclude_characters="\x00")


def ros_text(max_size: int) -> st.SearchStrategy[str]:
    """Text that a ROS ``string`` field can hold."""
    return st.text(alphabet=ROS_CHARACTERS, max_size=max_size)


def examples(n: int) -> int:
    """``n`` examples under the ci and dev profiles; ten times as many under the fuzz profile.

    Tests set their own max_examples (it overrides any profile), so the profile's budget is
    applied as a factor here. Test modules are imported after the profile is loaded.
    """
    return max(1, n * settings.default.max_examples // 100)
