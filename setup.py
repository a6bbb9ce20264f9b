"""pip metadata for the offline pai_ros toolkit.

`pip install .` installs the ROS-free core and the `pai` command. The ROS 2 package (the
FeatureActivations message and the nodes) is built by colcon from CMakeLists.txt and
package.xml; see README.md.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "pai_ros" / "__init__.py").read_text()).group(1)

setup(
    name="pai_ros",
    version=VERSION,
    description="Interpretability for LeRobot ACT policies: attention heatmaps, SAE features, ROS 2 tooling",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["pai_ros", "pai_ros.*"]),
    include_package_data=True,
    # Versions are pinned in requirements.txt (what `make setup` installs); these are the
    # ranges the offline toolkit needs.
    install_requires=[
        "torch>=2.2,<2.11",
        "torchvision>=0.17,<0.26",
        "lerobot==0.4.4",
        "numpy>=1.24",
        "safetensors",
        "pyarrow>=14",
        "opencv-python-headless>=4.8",
        "matplotlib>=3.7",
        "tqdm",
        "rosbags>=0.11",
        "pyyaml",
    ],
    extras_require={
        "ui": ["gradio>=5,<6"],  # gradio 6 needs huggingface-hub>=1, LeRobot 0.4.4 <0.36: pip backtracks for hours
        "test": ["pytest", "pytest-timeout", "hypothesis", "mcap", "mcap-ros2-support", "playwright"],
    },
    entry_points={"console_scripts": ["pai = pai_ros.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Framework :: Robot Framework :: Tool",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
