"""Builds the wheel and sdist, installs the wheel in a fresh venv, tries it.

Usage: python scripts/check_package.py  (`make package` runs it)

1. `python -m build` (without build isolation: this Python's setuptools)
   writes both archives to a temporary directory.
2. Their contents: the wheel holds every module of the package and
   `py.typed`, and nothing else at its top level; the sdist holds the
   package, setup.py, pyproject.toml, README.md and LICENSE.
3. A fresh venv gets the wheel (not editable, without dependencies), and
   sees this Python's installed packages (Keras, ...) through a `.pth`
   file: nothing is downloaded, and the checkout is not on its path.
4. There, `frozen-bn --help` and `--version` answer with nothing on
   stderr, and `import frozen_bn` imports the installed copy.

Exits non-zero, saying what failed, at the first failure.
"""

import os
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import venv
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "frozen_bn"


def main():
    with tempfile.TemporaryDirectory() as work:
        dist = os.path.join(work, "dist")
        run([sys.executable, "-m", "build", "--no-isolation", "-o", dist, ROOT])
        (wheel,) = [f for f in os.listdir(dist) if f.endswith(".whl")]
        (sdist,) = [f for f in os.listdir(dist) if f.endswith(".tar.gz")]
        check_wheel(os.path.join(dist, wheel))
        check_sdist(os.path.join(dist, sdist))
        python, script = installed(os.path.join(dist, wheel), work)
        smoke_test(python, script, work, version=wheel.split("-")[1])
    print("package: wheel and sdist built, installed and tried")
    return 0


def run(command, **kwargs):
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stdout}{done.stderr}")
    return done


def source_modules():
    """The package's files in the checkout, relative to ROOT."""
    return {
        os.path.relpath(os.path.join(directory, name), ROOT)
        for directory, _, names in os.walk(os.path.join(ROOT, PACKAGE))
        for name in names
        if name.endswith(".py") or name == "py.typed"
    }


def check_wheel(path):
    names = set(zipfile.ZipFile(path).namelist())
    missing = source_modules() - names
    if missing:
        sys.exit(f"the wheel lacks {sorted(missing)}")
    tops = {name.split("/")[0] for name in names}
    extra = {t for t in tops if t != PACKAGE and not t.endswith(".dist-info")}
    if extra:
        sys.exit(f"the wheel installs more than {PACKAGE}: {sorted(extra)}")


def check_sdist(path):
    with tarfile.open(path) as archive:
        # Each name starts with the sdist's own directory: frozen_bn-0.2.0/.
        names = {name.split("/", 1)[-1] for name in archive.getnames()}
    wanted = {"setup.py", "pyproject.toml", "README.md", "LICENSE"}
    missing = (wanted | source_modules()) - names
    if missing:
        sys.exit(f"the sdist lacks {sorted(missing)}")


def installed(wheel, work):
    """A fresh venv with `wheel` installed; its python and console script."""
    env_dir = os.path.join(work, "venv")
    venv.create(env_dir, with_pip=True)
    python = os.path.join(env_dir, "bin", "python")
    site = run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    ).stdout.strip()
    # This Python's packages, after the venv's own: the wheel comes first.
    with open(os.path.join(site, "installed_here.pth"), "w") as pth:
        pth.write(sysconfig.get_path("purelib") + "\n")
    run([python, "-m", "pip", "install", "--quiet", "--no-deps", wheel])
    return python, os.path.join(env_dir, "bin", "frozen-bn")


def smoke_test(python, script, work, version):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for arguments, expected in (
        (["--help"], "usage: frozen-bn"),
        (["--version"], f"frozen-bn {version}"),
    ):
        done = run([script, *arguments], cwd=work, env=env)
        if not done.stdout.startswith(expected) or done.stderr:
            sys.exit(
                f"frozen-bn {' '.join(arguments)} printed:\n{done.stdout}"
                f"{done.stderr}"
            )
    where = run(
        [python, "-c", "import frozen_bn; print(frozen_bn.__file__)"],
        cwd=work,
        env=env,
    ).stdout.strip()
    if not where.startswith(work):
        sys.exit(f"import frozen_bn found {where}, not the installed wheel")


if __name__ == "__main__":
    sys.exit(main())
