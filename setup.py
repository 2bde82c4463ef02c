"""Build and install Dockcast.

The Cython extensions (``sfu/_*.pyx``) are optional: without Cython or a compiler the
install still works and the pure-Python twins (``sfu/_*_py.py``) are used, slower.
With ``DOCKCAST_REQUIRE_COMPILED=1`` (``make build`` sets it) a missing Cython or a
failed compile fails the build instead.
"""

import glob
import os
import sys

from setuptools import find_namespace_packages, setup
from setuptools.command.build_ext import build_ext


def read_requirements(name):
    with open(os.path.join(os.path.dirname(__file__), name)) as f:
        return [
            line.split("#")[0].strip()
            for line in f
            if line.strip() and not line.startswith(("#", "-r"))
        ]


REQUIRED = os.environ.get("DOCKCAST_REQUIRE_COMPILED") == "1"


def extensions():
    sources = sorted(glob.glob("sfu/_*.pyx") + glob.glob("bench/_*.pyx"))
    if not sources:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRED:
            raise SystemExit("DOCKCAST_REQUIRE_COMPILED=1 but Cython is not installed")
        print("Cython not installed: building without the compiled extensions", file=sys.stderr)
        return []
    return cythonize(
        sources,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
        quiet=True,
    )


class OptionalBuildExt(build_ext):
    """Keep installing when an extension fails to compile; the pure twins take over."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure
            if REQUIRED:
                raise
            print(f"warning: compiled extensions not built ({exc})", file=sys.stderr)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            if REQUIRED:
                raise
            print(f"warning: {ext.name} not built ({exc})", file=sys.stderr)


setup(
    name="dockcast",
    version="0.1.0",
    description="Self-hosted SFU media server for cross-border logistics",
    python_requires=">=3.11",
    # namespace packages too: signalling/web holds the browser files (data, no __init__)
    packages=find_namespace_packages(include=["sfu*", "signalling*", "plugins*", "bench*", "dockcast*"],
                                     exclude=["*.__pycache__"]),
    package_data={"signalling.web": ["*", "**/*"], "sfu": ["*.pyx", "*.pxd", "*.pyi"],
                  "plugins.assistant": ["intents.json", "intents.npz"]},
    include_package_data=True,
    ext_modules=extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
    install_requires=read_requirements("requirements.txt"),
    entry_points={
        "console_scripts": ["dockcast = dockcast.cli:main"],
        # plugins by short name (node TOML: [plugins.NAME] tables; DOCKCAST_PLUGINS=NAME,...)
        "dockcast.plugins": [
            "shipments = plugins.shipments:ShipmentsPlugin",
            "webhooks = plugins.webhooks:WebhooksPlugin",
            "inspection = plugins.inspection:InspectionPlugin",
            "assistant = plugins.assistant:AssistantPlugin",
        ],
    },
)
