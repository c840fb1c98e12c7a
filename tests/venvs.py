"""A throwaway virtual environment that sees the packages of the Python running the tests, whether that Python is
the system's or itself a virtual environment's (`--system-site-packages` alone would see the system's only)."""
import site
import subprocess
from pathlib import Path


def venv_seeing_this_env(path: Path, python: str) -> Path:
    """Create a venv at `path` from `python`; its site-packages gets a .pth listing this environment's
    site-packages (after its own, so what is installed into the venv wins). Returns the venv's python."""
    subprocess.run([python, "-m", "venv", "--system-site-packages", str(path)], check=True)
    py = path / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    outer = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "_outer_env.pth").write_text("\n".join(outer) + "\n")
    return py
