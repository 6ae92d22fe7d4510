//! The answer to a request head the connection refused (see
//! `server::connection::head`): the host's JSON error with a request id,
//! `Connection: close`, and one invocation line saying why, with what could
//! be read of the head (method, path, route, user agent).

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::uri::Parts;
use http::{Method, Response, StatusCode, Uri};

use super::RouteTarget;
use super::body::ResponseBody;
use super::outcome::Failure;
use super::record::{Record, Recorder};
use super::reply::Reply;
use crate::routes::Router;
use crate::server::connection::ConnectionState;
use crate::server::connection::head::{Refusal, Refused};

/// Answers `refusal`, the head of the request hyper handed over in its
/// place.
pub fn answer(
    router: &Router<RouteTarget>,
    recorder: &Arc<Recorder>,
    connection: Arc<ConnectionState>,
    refusal: Refusal,
) -> Response<ResponseBody<Record>> {
    let head = as_read(&refusal);
    let mut record = Record::start(recorder.clone(), &head, connection.peer.addr);
    record.on_connection(connection);
    // A target that could not be read, or is no path, routes nowhere.
    if let Some(found) = refusal
        .target
        .as_ref()
        .map(Uri::path)
        .filter(|path| path.starts_with('/'))
        .and_then(|path| router.route(path))
    {
        record.served_by(found.target.served.clone());
    }
    let reply = match refusal.why {
        Refused::Malformed(why) => Reply::failed(&mut record, Failure::Malformed(why)),
        Refused::BodyTooLarge => Reply::error(StatusCode::PAYLOAD_TOO_LARGE),
    };
    let mut response = reply.into_response(record);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The refused request as far as it was read: an unread method is `-`, an
/// unread target an empty path.
fn as_read(refusal: &Refusal) -> http::Request<()> {
    let mut head = http::Request::new(());
    *head.method_mut() = refusal
        .method
        .clone()
        .unwrap_or_else(|| Method::from_bytes(b"-").unwrap_or_default());
    *head.uri_mut() = refusal
        .target
        .clone()
        .unwrap_or_else(|| Uri::from_parts(Parts::default()).unwrap_or_default());
    if let Some(user_agent) = &refusal.user_agent {
        head.headers_mut()
            .insert(header::USER_AGENT, user_agent.clone());
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::outcome::Malformed;

    #[test]
    fn an_unread_head_has_no_method_and_no_path() {
        let head = as_read(&Refusal {
            why: Refused::Malformed(Malformed::Invalid),
            method: None,
            target: None,
            user_agent: None,
            http10: false,
        });
        assert_eq!((head.method().as_str(), head.uri().path()), ("-", ""));
    }
}
