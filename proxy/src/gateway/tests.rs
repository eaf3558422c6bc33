use super::*;
use crate::{
    routes::{DirectAnswer, HostMatch, MethodSet, Route},
    upstream::{Passive, PoolSpec},
};
use std::net::Ipv4Addr;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

fn pool(policy: Policy) -> PoolSpec {
    PoolSpec {
        name: "app".into(),
        members: vec![("10.77.0.4:8080".parse().unwrap(), 1)],
        policy,
        health: None,
        passive: Passive::default(),
    }
}

fn gateway(policy: Policy) -> Gateway {
    let routes = RouteTable::new(vec![
        Route {
            name: "health".into(),
            host: HostMatch::Any,
            path_prefix: "/healthz".into(),
            methods: Some(MethodSet::parse(&["GET"]).unwrap()),
            action: RouteAction::Direct(DirectAnswer {
                status: 200,
                headers: vec![("Content-Type".into(), "text/plain".into())],
                body: b"ok\n".as_slice().into(),
            }),
        },
        Route {
            name: "api".into(),
            host: HostMatch::parse("api.example.com").unwrap(),
            path_prefix: "/".into(),
            methods: None,
            action: RouteAction::Proxy {
                pool: 0,
                host_rewrite: Some("backend.internal".into()),
            },
        },
    ]);
    Gateway::new(&routes, &[pool(policy)], Limits::default(), "10.77.0.2:80", 1024)
}

fn decide(g: &Gateway, input: &[u8]) -> (Verdict, String) {
    let mut out = vec![0u8; 8192];
    let verdict = g.decide(input, CLIENT.into(), &mut out);
    let written = match verdict {
        Verdict::Respond { written, .. } => written,
        Verdict::Forward(f) => f.written,
        Verdict::Incomplete => 0,
    };
    (verdict, String::from_utf8_lossy(&out[..written]).into_owned())
}

#[test]
fn a_proxied_request_gets_a_rewritten_head_and_its_framing() {
    let g = gateway(Policy::RoundRobin);
    let input = b"POST /v1/items?x=1 HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello";
    let (verdict, head) = decide(&g, input);
    let Verdict::Forward(f) = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!(f.head_len, input.len() - 5);
    assert_eq!(f.body, BodyFraming::Length(5));
    assert_eq!(
        (f.pool, f.route, f.close, f.idempotent, f.hash),
        (0, 1, false, false, None)
    );
    assert!(head.starts_with("POST /v1/items?x=1 HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("Host: backend.internal\r\n"), "{head}");
    assert!(head.contains("X-Forwarded-For: 10.77.0.1\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "{head}");
}

#[test]
fn direct_routes_answer_and_misses_get_404_or_405_with_allow() {
    let g = gateway(Policy::RoundRobin);
    let (verdict, text) = decide(&g, b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n");
    assert!(
        matches!(
            verdict,
            Verdict::Respond {
                status: 200,
                close: false,
                ..
            }
        ),
        "{verdict:?}"
    );
    assert!(text.ends_with("\r\n\r\nok\n"), "{text}");
    let (verdict, text) = decide(
        &g,
        b"POST /healthz HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(
        matches!(verdict, Verdict::Respond { status: 405, .. }),
        "{verdict:?}"
    );
    assert!(text.contains("Allow: GET, HEAD\r\n"), "{text}");
    let (verdict, _) = decide(&g, b"GET /other HTTP/1.1\r\nHost: gw\r\n\r\n");
    assert!(
        matches!(verdict, Verdict::Respond { status: 404, .. }),
        "{verdict:?}"
    );
}

#[test]
fn a_direct_route_waits_for_a_body_that_fits_and_refuses_one_that_does_not() {
    let g = gateway(Policy::RoundRobin);
    let partial = b"GET /healthz HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n\r\nabc";
    assert_eq!(decide(&g, partial).0, Verdict::Incomplete);
    let whole = b"GET /healthz HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\nabcGET";
    let (verdict, _) = decide(&g, whole);
    assert!(
        matches!(verdict, Verdict::Respond { consumed, close: false, .. } if consumed == whole.len() - 3)
    );
    let huge = b"GET /healthz HTTP/1.1\r\nHost: gw\r\nContent-Length: 100000\r\n\r\nabc";
    let (verdict, _) = decide(&g, huge);
    assert!(
        matches!(verdict, Verdict::Respond { status: 413, close: true, consumed, .. } if consumed == huge.len())
    );
}

#[test]
fn smuggling_is_refused_with_400_and_close() {
    let g = gateway(Policy::RoundRobin);
    let input = b"POST / HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let (verdict, text) = decide(&g, input);
    assert_eq!(
        verdict,
        Verdict::Respond {
            consumed: input.len(),
            written: text.len(),
            close: true,
            status: 400,
            route: None
        }
    );
}

#[test]
fn hashing_pools_get_the_key_of_the_client_or_the_header() {
    let g = gateway(Policy::ConsistentHash {
        key: HashKey::ClientIp,
    });
    let Verdict::Forward(f) = decide(&g, b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n").0 else {
        panic!()
    };
    assert_eq!(f.hash, Some(hash_key(&CLIENT.octets())));
    let g = gateway(Policy::ConsistentHash {
        key: HashKey::Header("x-user".into()),
    });
    let Verdict::Forward(f) = decide(
        &g,
        b"GET / HTTP/1.1\r\nHost: api.example.com\r\nX-User:  alice \r\n\r\n",
    )
    .0
    else {
        panic!()
    };
    assert_eq!(f.hash, Some(hash_key(b"alice")));
    let Verdict::Forward(f) = decide(&g, b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n").0 else {
        panic!()
    };
    assert_eq!(f.hash, None);
}

#[test]
fn dot_segments_are_refused_before_routing() {
    let g = gateway(Policy::RoundRobin);
    for path in [
        "/healthz/..",
        "/a/../healthz",
        "/./healthz",
        "/a/%2e%2e/b",
        "/a/.%2E/b",
        "/x/%2e",
    ] {
        let input = format!("GET {path} HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
        let (verdict, _) = decide(&g, input.as_bytes());
        assert!(
            matches!(
                verdict,
                Verdict::Respond {
                    status: 400,
                    close: true,
                    ..
                }
            ),
            "{path}: {verdict:?}"
        );
    }
    for path in ["/a/...", "/a/.b", "/a/b.", "/a/%2ex", "/", "/a//b"] {
        let input = format!("GET {path} HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
        let (verdict, _) = decide(&g, input.as_bytes());
        assert!(matches!(verdict, Verdict::Forward(_)), "{path}: {verdict:?}");
    }
}

#[test]
fn a_health_check_names_its_member_as_the_host_in_either_family() {
    let mut out = [0u8; 256];
    let v4: std::net::SocketAddr = "10.77.0.4:8080".parse().unwrap();
    let n = health_request("/healthz", v4, &mut out);
    assert_eq!(
        &out[..n],
        b"GET /healthz HTTP/1.1\r\nHost: 10.77.0.4:8080\r\nUser-Agent: xgate-health\r\nConnection: close\r\n\r\n"
    );
    let v6: std::net::SocketAddr = "[fd77::4]:8080".parse().unwrap();
    let n = health_request("/healthz", v6, &mut out);
    let text = std::str::from_utf8(&out[..n]).unwrap();
    assert!(text.contains("\r\nHost: [fd77::4]:8080\r\n"), "{text}");
    assert_eq!(
        health_request("/healthz", v6, &mut out[..20]),
        0,
        "too small: nothing"
    );
}

/// Routes `a.example` (proxied, no rewrite) and `b.example` (answered directly).
fn two_hosts() -> Gateway {
    let routes = RouteTable::new(vec![
        Route {
            name: "a".into(),
            host: HostMatch::parse("a.example").unwrap(),
            path_prefix: "/".into(),
            methods: None,
            action: RouteAction::Proxy {
                pool: 0,
                host_rewrite: None,
            },
        },
        Route {
            name: "b".into(),
            host: HostMatch::parse("b.example").unwrap(),
            path_prefix: "/".into(),
            methods: None,
            action: RouteAction::Direct(DirectAnswer {
                status: 200,
                headers: vec![],
                body: b"b\n".as_slice().into(),
            }),
        },
    ]);
    Gateway::new(
        &routes,
        &[pool(Policy::RoundRobin)],
        Limits::default(),
        "10.77.0.2:80",
        1024,
    )
}

#[test]
fn an_absolute_form_target_routes_on_its_authority_and_is_sent_as_the_host() {
    let g = two_hosts();
    let (verdict, head) = decide(
        &g,
        b"GET http://a.example:80/x HTTP/1.1\r\nHost: b.example\r\n\r\n",
    );
    let Verdict::Forward(f) = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!(f.route, 0);
    assert!(
        head.starts_with("GET http://a.example:80/x HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nHost: a.example:80\r\n"), "{head}");
    assert!(!head.contains("b.example"), "{head}");
    // HTTP/1.0 without Host: the target's authority is sent as the Host.
    let (_, head) = decide(&g, b"GET http://a.example/x HTTP/1.0\r\n\r\n");
    assert!(head.contains("\r\nHost: a.example\r\n"), "{head}");
    let (verdict, text) = decide(&g, b"GET http://b.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n");
    assert!(
        matches!(
            verdict,
            Verdict::Respond {
                status: 200,
                route: Some(1),
                ..
            }
        ),
        "{verdict:?}"
    );
    assert!(text.ends_with("\r\n\r\nb\n"), "{text}");
    // Origin-form routes on Host as before.
    let (verdict, _) = decide(&g, b"GET /x HTTP/1.1\r\nHost: A.Example.:80\r\n\r\n");
    assert!(
        matches!(verdict, Verdict::Forward(f) if f.route == 0),
        "{verdict:?}"
    );
}

#[test]
fn an_invalid_host_is_refused_with_400_and_close() {
    let g = two_hosts();
    for input in [
        &b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a.example@evil\r\n\r\n",
        b"GET http://a.example@evil/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
        b"GET http://a.example/ HTTP/1.1\r\nHost: a b\r\n\r\n",
    ] {
        let (verdict, text) = decide(&g, input);
        assert!(
            matches!(verdict, Verdict::Respond { status: 400, close: true, consumed, route: None, .. } if consumed == input.len()),
            "{verdict:?}"
        );
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    }
}
