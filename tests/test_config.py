"""Build-level behaviour: configuration report, thread control, import failure."""
import os
import subprocess
import sys
import textwrap

import pytest

import fastconv


def test_show_config_reports_version_openmp_threads_blas(capsys):
    fastconv.show_config()
    out = capsys.readouterr().out
    assert f"fastconv {fastconv.__version__}" in out
    assert "OpenMP: " in out and "threads: " in out and "BLAS" in out
    c = fastconv.config()
    assert isinstance(c["openmp"], bool) and c["threads"] >= 1


def test_set_num_threads_takes_effect_at_call_time():
    before = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(1)
        assert fastconv.get_num_threads() == 1
        fastconv.set_num_threads(2)
        expected = 2 if fastconv.config()["openmp"] else 1
        assert fastconv.get_num_threads() == expected
    finally:
        fastconv.set_num_threads(before)


def test_omp_num_threads_is_honoured():
    code = "import fastconv; print(fastconv.get_num_threads(), fastconv.config()['openmp'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"OMP_NUM_THREADS": "1", "PATH": ""}, check=True).stdout
    assert out.split()[0] == "1"


@pytest.mark.parametrize("env, want", [
    ({}, "GOMP_SPINCOUNT=30000 (fastconv's default)"),
    ({"OMP_WAIT_POLICY": "passive"}, "OMP_WAIT_POLICY=passive"),
    ({"GOMP_SPINCOUNT": "5"}, "GOMP_SPINCOUNT=5"),
])
def test_idle_thread_spin_default_is_set_only_while_the_kernels_load(env, want):
    """fastconv's GOMP_SPINCOUNT default applies only without the user's own setting,
    and leaves the environment as it found it (child processes, other libraries)."""
    code = ("import os, fastconv; print(fastconv.config()['omp_spin']); "
            "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))")
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**base, **env}, check=True).stdout.splitlines()
    assert out[0] == want
    assert out[1] == f"{env.get('GOMP_SPINCOUNT')} {env.get('OMP_WAIT_POLICY')}"


def test_missing_extension_gives_one_clear_import_error(tmp_path):
    """An unbuilt copy of the package fails at import with build instructions."""
    import pathlib
    import shutil
    src = pathlib.Path(fastconv.__file__).parent
    dst = tmp_path / "fastconv"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.so", "*.pyd",
                                                            "__pycache__"))
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        try:
            import fastconv
        except ImportError as e:
            print("IMPORTERROR", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "IMPORTERROR" in out.stdout, out.stderr
    assert "pip install ." in out.stdout and "compiled kernels" in out.stdout
