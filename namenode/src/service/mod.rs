pub mod client;
pub mod datanode;
pub mod ha;
