from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

ParallelCompile("DDKERNELS_BUILD_JOBS", default=0).install()

ext_modules = [
    Pybind11Extension(
        "ddkernels._C",
        sorted(["csrc/bindings.cpp", "csrc/linear_unroll.cpp", "csrc/multiscale_mse.cpp", "csrc/pairwise_skl.cpp",
                "csrc/simd.cpp", "csrc/spectral.cpp", "csrc/spectral_fft.cpp"]),
        include_dirs=["csrc"],
        cxx_std=17,
        extra_compile_args=["-O3", "-fopenmp", "-fno-math-errno"],
        extra_link_args=["-fopenmp"],
    ),
]

setup(ext_modules=ext_modules, cmdclass={"build_ext": build_ext})
