import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "frozen_bn" / "__init__.py").read_text()
).group(1)

TENSORFLOW = "tensorflow>=2.21,<2.22"
EXTRAS = {
    # tf-keras depends on the full `tensorflow` package, so that is the one
    # we ask for everywhere: with `tensorflow-cpu` beside it pip would
    # install two copies of the same module.
    "tensorflow": [TENSORFLOW],
    "jax": ["jax[cpu]>=0.4.30"],
    # 2.13.0 is the CPU build on our machines; other specs pull CUDA builds.
    "torch": ["torch==2.13.0"],
    "tf-keras": ["tf-keras>=2.21,<2.22", TENSORFLOW],
    "plot": ["matplotlib>=3.8"],
    "demo": ["scikit-learn>=1.3", "matplotlib>=3.8"],
    # `make docs`: the site and its API reference (mkdocs 1.x plugins).
    "docs": [
        "mkdocs>=1.6,<2",
        "mkdocs-material>=9.5,<10",
        "mkdocstrings>=1.0,<2",
        "mkdocstrings-python>=2.0,<3",
    ],
    # `frozen_bn.export`'s converters (ONNX on TensorFlow and JAX) and the
    # runtimes that check an artifact.
    "export": [
        "onnxruntime>=1.20",
        "tf2onnx>=1.16",
        "jax2onnx>=0.17",
        "ai-edge-litert>=2.0",
    ],
}
EXTRAS["all"] = sorted(
    {req for name, reqs in EXTRAS.items() if name != "docs" for req in reqs}
)
EXTRAS["dev"] = (
    EXTRAS["all"]
    + EXTRAS["docs"]
    + [
        "build>=1.2",  # scripts/check_package.py
        "h5py>=3.10",
        "hypothesis>=6.100",
        "keras-hub==0.32.0",  # pinned: its image backbones are test fixtures
        "mypy==2.4.1",  # pinned: CI's type check must not drift
        "pytest>=8",
        "ruff==0.17.6",  # pinned: CI lint must not drift
    ]
)

setup(
    name="frozen_bn",
    version=VERSION,
    description=(
        "Keras BatchNormalization that uses its stored statistics whenever "
        "it is frozen, and the tools to fine-tune pretrained models with it."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["frozen_bn", "frozen_bn.*"]),
    package_data={"frozen_bn": ["py.typed"]},
    install_requires=["keras>=3.15", "numpy>=1.26"],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["frozen-bn=frozen_bn.cli:main"]},
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
