//! Names with control characters or bidirectional overrides, which would
//! let a name forge lines or reorder what `ls` shows: the namenode refuses
//! them wherever a name is made, so a raw RPC cannot slip one in either.

use rfs_client::CreateOptions;
use rfs_integration::MiniCluster;
use rfs_proto::namenode::client_protocol_client::ClientProtocolClient;
use rfs_proto::namenode::{CreateRequest, MkdirsRequest, RenameRequest};
use rfs_proto::rpc_error::{kind_of, RpcErrorKind};

use super::common::write_file;
use super::dfs::Dfs;

/// Names refused, each with the character the refusal must name.
const REFUSED: &[(&str, &str)] = &[
    ("\u{1b}[2Jclear", "U+001B"),
    ("two\nlines", "U+000A"),
    ("tab\there", "U+0009"),
    ("del\u{7f}", "U+007F"),
    ("csi\u{9b}31m", "U+009B"),
    ("txt.\u{202e}exe", "U+202E"),
    ("iso\u{2066}late", "U+2066"),
    ("pop\u{2069}", "U+2069"),
];

fn refused(c: char) -> bool {
    c.is_control()
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// The error is an invalid path naming `code`, in text free of the
/// characters it refuses.
fn assert_refused(kind: RpcErrorKind, message: &str, code: &str) {
    assert_eq!(kind, RpcErrorKind::InvalidPath, "{message}");
    assert!(message.contains(code), "{message:?} should name {code}");
    assert!(
        !message.chars().any(refused),
        "{message:?} holds a raw control character"
    );
}

fn client_refused<T>(r: Result<T, rfs_client::Error>, code: &str) {
    match r {
        Ok(_) => panic!("a name with {code} was accepted"),
        Err(e) => assert_refused(e.kind(), &e.to_string(), code),
    }
}

fn raw_refused<T>(r: Result<T, tonic::Status>, code: &str) {
    match r {
        Ok(_) => panic!("a raw RPC with {code} in a name was accepted"),
        Err(s) => assert_refused(kind_of(&s), s.message(), code),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_control_characters_are_refused_wherever_a_name_is_made() -> anyhow::Result<()> {
    let cluster = MiniCluster::builder().datanodes(1).start().await?;
    let c = cluster.client().await?;
    let mut raw =
        ClientProtocolClient::connect(format!("http://{}", cluster.namenode_addr())).await?;
    c.mkdirs("/ok", false).await?;
    write_file(&c, "/ok/f", b"f").await?;

    for (name, code) in REFUSED {
        let path = format!("/ok/{name}");
        client_refused(c.mkdirs(&path, false).await, code);
        client_refused(c.mkdirs(&format!("{path}/sub"), true).await, code);
        client_refused(c.create(&path, CreateOptions::default()).await, code);
        client_refused(
            c.create(&format!("{path}/f"), CreateOptions::default())
                .await,
            code,
        );
        client_refused(c.rename("/ok/f", &path).await, code);

        let mkdirs = MkdirsRequest {
            path: path.clone(),
            create_parent: true,
            ..Default::default()
        };
        raw_refused(raw.mkdirs(mkdirs).await, code);
        let create = CreateRequest {
            path: path.clone(),
            client_id: "raw".into(),
            overwrite: true,
            create_parent: true,
            ..Default::default()
        };
        raw_refused(raw.create(create).await, code);
        let rename = RenameRequest {
            src: "/ok/f".into(),
            dst: path.clone(),
            ..Default::default()
        };
        raw_refused(raw.rename(rename).await, code);
    }
    let names: Vec<String> = c.list("/ok").await?.into_iter().map(|s| s.path).collect();
    assert_eq!(names, ["/ok/f"], "nothing was made");

    // Other names beyond ASCII stay welcome.
    assert!(c.mkdirs("/ok/é 日本 🙂", false).await?);
    assert_eq!(c.rename("/ok/f", "/ok/ß").await?, "/ok/ß");

    // `dfs` says so in one clean line.
    let dfs = Dfs::new(cluster.namenode_addr());
    let err = dfs.fails(&["mkdir", "/ok/a\u{1b}[31mred"]);
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert_refused(RpcErrorKind::InvalidPath, err.trim_end(), "U+001B");
    Ok(())
}
