//! The gRPC services, and the request checks they share.

pub mod client;
pub mod datanode;
pub mod ha;
mod listing;

use rfs_proto::common::ExtendedBlock;

use crate::error::NamenodeError;
use crate::namespace::BlockMeta;

/// The block a request must name; a clear error when it names none.
fn required_block(b: Option<ExtendedBlock>) -> Result<ExtendedBlock, NamenodeError> {
    b.ok_or_else(|| NamenodeError::InvalidArgument("block is required".into()))
}

/// A block as the namespace records it.
fn block_meta(b: &ExtendedBlock) -> BlockMeta {
    BlockMeta {
        id: b.block_id,
        gen_stamp: b.generation_stamp,
        len: b.num_bytes,
    }
}
