//! Generates the tonic/prost code. `protoc` comes from `protoc-bin-vendored`
//! so a fresh machine needs nothing but cargo.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // Build scripts are single-threaded, so setting the variable is sound.
    unsafe { std::env::set_var("PROTOC", protoc) };
    // The shared types get their own module; the other packages refer to
    // them as `crate::common` (nested modules such as transfer::ops cannot
    // reach them through `super`).
    let common_out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("common");
    std::fs::create_dir_all(&common_out)?;
    tonic_prost_build::configure()
        .out_dir(&common_out)
        .compile_protos(&["proto/hdfs_common.proto"], &["proto"])?;
    let files = [
        "proto/namenode.proto",
        "proto/datanode.proto",
        "proto/transfer.proto",
        "proto/ha.proto",
    ];
    tonic_prost_build::configure()
        .extern_path(".rfs.common", "crate::common")
        // Snapshot pieces are slices of one buffer, not copies of it.
        .bytes(".rfs.ha.SnapshotChunk.data")
        .compile_protos(&files, &["proto"])?;
    println!("cargo:rerun-if-changed=proto/hdfs_common.proto");
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
