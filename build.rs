//! Puts libtorch's directory on the binary's rpath, so kdcache and its tests run without
//! LD_LIBRARY_PATH; links libtorch_cuda when libtorch has it and its CUDA libraries can be found (or
//! KDCACHE_CUDA=1), since the linker's --as-needed would otherwise drop it and tch would see no GPU.
use std::path::Path;

/// Where the CUDA libraries libtorch_cuda.so needs may live: the pip wheels' `nvidia/` packages beside
/// torch, the libtorch directory itself (standalone libtorch bundles), a system CUDA toolkit, or a
/// directory on LD_LIBRARY_PATH.
fn cuda_libraries(lib: &Path) -> Option<String> {
    let mut dirs = vec![lib.join("../../nvidia/cusparse/lib"), lib.join("../../nvidia/cu13/lib"), lib.to_path_buf()];
    dirs.push("/usr/local/cuda/lib64".into());
    if let Ok(p) = std::env::var("LD_LIBRARY_PATH") {
        dirs.extend(p.split(':').filter(|s| !s.is_empty()).map(Into::into));
    }
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("libcusparse.so") {
                return Some(d.display().to_string());
            }
        }
    }
    None
}

fn main() {
    println!("cargo:rerun-if-env-changed=KDCACHE_CUDA");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LD_LIBRARY_PATH");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_none() {
        return;
    }
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=torch-sys did not report libtorch's lib directory; set LD_LIBRARY_PATH to run");
        return;
    };
    // a different libtorch (switching the venv between its CPU and CUDA variants) re-decides the link
    println!("cargo:rerun-if-changed={lib}");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    let lib = Path::new(&lib);
    let has_cuda = lib.join("libtorch_cuda.so").exists();
    let found = cuda_libraries(lib);
    let want = match std::env::var("KDCACHE_CUDA").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => found.is_some(),
    };
    if has_cuda && want {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    } else if has_cuda && std::env::var("KDCACHE_CUDA").as_deref() != Ok("0") {
        // the CPU-only venv ships libtorch_cuda.so without the CUDA libraries it needs
        println!(
            "cargo:warning=libtorch_cuda.so is present but no CUDA libraries (libcusparse) were found: this kdcache runs on the CPU only (KDCACHE_CUDA=1 links CUDA anyway, for a binary meant for a GPU machine)"
        );
    }
}
