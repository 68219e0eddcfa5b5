//! Puts libtorch's directory on the binary's rpath, so kdcache and its tests run without
//! LD_LIBRARY_PATH; links libtorch_cuda when CUDA libraries are present (or KDCACHE_CUDA=1), since the
//! linker's --as-needed would otherwise drop it and tch would see no GPU.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=KDCACHE_CUDA");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_none() {
        return;
    }
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=torch-sys did not report libtorch's lib directory; set LD_LIBRARY_PATH to run");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    let lib = Path::new(&lib);
    // the CPU-only venv carries libtorch_cuda.so but not the CUDA libraries it needs (cusparse, ...)
    let cuda_libs = lib.join("../../nvidia/cusparse").exists() || lib.join("../../nvidia/cu13/lib/libcusparse.so.12").exists();
    let want = match std::env::var("KDCACHE_CUDA").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => cuda_libs,
    };
    if want && lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
