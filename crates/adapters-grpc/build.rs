//! Generates the messages, the server and the client of the contract's protos,
//! plus their file descriptor set (for server reflection). protoc comes from
//! `protoc-bin-vendored`, so no system protoc is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;
    // The vendored protoc goes to prost-build directly (what setting PROTOC
    // would do, without `set_var`, which is unsafe in edition 2024).
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);

    let protos = [
        "proto/zitadel/object.proto",
        "proto/zitadel/message.proto",
        "proto/zitadel/user.proto",
        "proto/zitadel/auth.proto",
        "proto/zitadel/object/v2/object.proto",
        "proto/zitadel/user/v2/user_service.proto",
        "proto/zitadel/management.proto",
        "proto/otp/v1/check.proto",
        "proto/otp/v1/import.proto",
        "proto/google/rpc/status.proto",
    ];
    let includes = [PathBuf::from("proto"), well_known];

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(true)
        // The secret and the code stay out of Debug output (and so out of logs).
        .skip_debug([
            ".zitadel.auth.v1.AddMyAuthFactorOTPResponse",
            ".zitadel.auth.v1.VerifyMyAuthFactorOTPRequest",
            ".otp.v1.CheckOTPRequest",
            ".otp.v1.ImportTOTPRequest",
            ".zitadel.user.v2.RegisterTOTPResponse",
            ".zitadel.user.v2.VerifyTOTPRegistrationRequest",
            ".zitadel.user.v2.GenerateRecoveryCodesResponse",
            ".otp.v1.CheckRecoveryCodeRequest",
        ])
        .file_descriptor_set_path(out_dir.join("descriptor.bin"))
        .include_file("proto.rs")
        .compile_with_config(config, &protos.map(PathBuf::from), &includes)?;

    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
