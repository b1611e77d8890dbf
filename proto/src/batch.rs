//! One call of a `Batch` (namenode.proto) answered as its own RPC would
//! be, by any `ClientProtocol` service: the namenode's, and the fake
//! namenode of the client's tests.

use tonic::{Request, Response, Status};

use crate::namenode::answer::Answer as A;
use crate::namenode::call::Call as C;
use crate::namenode::client_protocol_server::ClientProtocol;
use crate::namenode::{Answer, Call};
use crate::rpc_error::{self, RpcErrorKind};

/// `call` handed to `service`'s handler for its kind; an error becomes the
/// answer's `CallError`.
pub async fn answer<S: ClientProtocol>(service: &S, call: Call) -> Answer {
    fn answered<T>(r: Result<Response<T>, Status>, as_answer: impl FnOnce(T) -> A) -> A {
        match r {
            Ok(resp) => as_answer(resp.into_inner()),
            Err(status) => A::Error(rpc_error::to_call_error(&status)),
        }
    }
    let s = service;
    let answer = match call.call {
        Some(C::Create(r)) => answered(s.create(Request::new(r)).await, A::Create),
        Some(C::Complete(r)) => answered(s.complete(Request::new(r)).await, A::Complete),
        Some(C::AddBlock(r)) => answered(s.add_block(Request::new(r)).await, A::AddBlock),
        Some(C::GetFileInfo(r)) => answered(s.get_file_info(Request::new(r)).await, A::GetFileInfo),
        Some(C::Delete(r)) => answered(s.delete(Request::new(r)).await, A::Delete),
        Some(C::Mkdirs(r)) => answered(s.mkdirs(Request::new(r)).await, A::Mkdirs),
        None => {
            let refused = rpc_error::status(
                RpcErrorKind::InvalidArgument,
                "a batched call names no operation (a client newer than this namenode?)",
            );
            A::Error(rpc_error::to_call_error(&refused))
        }
    };
    Answer {
        answer: Some(answer),
    }
}
