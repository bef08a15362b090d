"""Build the compiled kernels of fastconv.

Every ``src/*.pyx`` file becomes an extension module ``fastconv.<name>``.  OpenMP is
detected, not assumed: a tiny OpenMP program is compiled, linked and run with the
platform's flag; when that fails (or ``FASTCONV_NO_OPENMP=1``) the kernels are built
serial, with one warning.  No ``-march=native``: the code must run on any CPU of the
target architecture, so a wheel built here is safe to distribute.

``FASTCONV_BOUNDSCHECK=1`` builds with Cython's bounds and wraparound checks on (a
debug build for the test suite).  The extensions are translated and compiled in parallel
on every core this process may use; ``FASTCONV_BUILD_JOBS=N`` sets the number of jobs.
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import warnings

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))

OPENMP_TEST_PROGRAM = textwrap.dedent(
    """
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        printf("%d", n > 0 && omp_get_max_threads() > 0);
        return 0;
    }
    """
)


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _openmp_flags(compiler):
    """Return (compile_args, link_args) candidates for this compiler, best first."""
    ctype = compiler.compiler_type
    if ctype == "msvc":
        return [(["/openmp"], [])]
    if sys.platform == "darwin":
        # Apple clang has no -fopenmp driver flag; it needs libomp (e.g. Homebrew).
        prefixes = [os.environ.get("OPENMP_PREFIX", ""), "/opt/homebrew/opt/libomp",
                    "/usr/local/opt/libomp"]
        out = [(["-fopenmp"], ["-fopenmp"])]
        for p in filter(None, prefixes):
            out.append((["-Xpreprocessor", "-fopenmp", f"-I{p}/include"],
                        [f"-L{p}/lib", "-lomp", f"-Wl,-rpath,{p}/lib"]))
        return out
    return [(["-fopenmp"], ["-fopenmp"])]


def _try_openmp(compiler, cflags, ldflags):
    """Compile, link and run the OpenMP test program; True when it works."""
    tmp = tempfile.mkdtemp(prefix="fastconv-openmp-")
    try:
        src = os.path.join(tmp, "test_openmp.c")
        with open(src, "w") as f:
            f.write(OPENMP_TEST_PROGRAM)
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
        exe = os.path.join(tmp, "test_openmp")
        compiler.link_executable(objs, exe, extra_postargs=ldflags)
        if compiler.compiler_type == "msvc":
            exe += ".exe"
        out = subprocess.run([exe], capture_output=True, text=True, timeout=60)
        return out.returncode == 0 and out.stdout.strip() == "1"
    except Exception:  # any compile, link or run failure means "no OpenMP"
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build_jobs():
    """Compiler processes to run at once: FASTCONV_BUILD_JOBS, else every core this
    process may use."""
    text = os.environ.get("FASTCONV_BUILD_JOBS", "").strip()
    if text:
        try:
            jobs = int(text)
        except ValueError:
            jobs = 0
        if jobs < 1:
            raise SystemExit(f"FASTCONV_BUILD_JOBS must be a positive integer, got {text!r}")
        return jobs
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class BuildExt(build_ext):
    """build_ext that decides on OpenMP once, for every extension, and compiles the
    extensions in parallel (one per core, as ``build_ext -j``) unless told otherwise."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = _build_jobs()

    def build_extensions(self):
        cflags, ldflags, found = [], [], False
        if _env_flag("FASTCONV_NO_OPENMP"):
            reason = "FASTCONV_NO_OPENMP is set"
        else:
            reason = "no working OpenMP flag for this compiler"
            for cf, lf in _openmp_flags(self.compiler):
                if _try_openmp(self.compiler, cf, lf):
                    cflags, ldflags, found = cf, lf, True
                    break
        if not found:
            warnings.warn(f"fastconv: building WITHOUT OpenMP ({reason}); the kernels will "
                          "run on one thread.", stacklevel=1)
        # -fno-math-errno: no kernel reads errno, and with errno semantics GCC/Clang
        # cannot vectorise sqrt (src/_optim.pyx).  (MSVC's /O2 does not keep errno.)
        opt = (["/O2"] if self.compiler.compiler_type == "msvc"
               else ["-O3", "-fno-math-errno"])
        for ext in self.extensions:
            ext.extra_compile_args = opt + cflags + ext.extra_compile_args
            ext.extra_link_args = ldflags + ext.extra_link_args
            ext.define_macros.append(("FASTCONV_OPENMP", "1" if found else "0"))
        # pip builds a local checkout in place: without force, objects left by a build
        # with other flags (OpenMP on/off) would be reused.
        self.force = True
        super().build_extensions()


def extensions():
    from Cython.Build import cythonize

    directives = {
        "language_level": 3,
        "boundscheck": _env_flag("FASTCONV_BOUNDSCHECK"),
        "wraparound": _env_flag("FASTCONV_BOUNDSCHECK"),
        "initializedcheck": _env_flag("FASTCONV_BOUNDSCHECK"),
        "cdivision": True,
        "embedsignature": True,
    }
    exts = []
    for pyx in sorted(glob.glob(os.path.join("src", "*.pyx"))):
        name = os.path.splitext(os.path.basename(pyx))[0]
        exts.append(Extension(f"fastconv.{name}", [pyx], include_dirs=["src", "src/conv"]))
    # The generated C depends on the directives: debug and release builds keep apart.
    flavour = "cython-boundscheck" if _env_flag("FASTCONV_BOUNDSCHECK") else "cython"
    return cythonize(exts, compiler_directives=directives, include_path=["src"],
                     build_dir=os.path.join("build", flavour), nthreads=_build_jobs())


if __name__ == "__main__":
    os.chdir(HERE)
    setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
