use super::*;
use crate::{
    ratelimit::{LimitKey, RateLimit, RateTable},
    routes::{DirectAnswer, HostMatch, MethodSet, Route},
    upstream::{Passive, PoolSpec},
};
use std::{net::Ipv4Addr, sync::Arc};

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
            rate_limit: None,
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
            rate_limit: None,
        },
    ]);
    Gateway::new(&routes, &[pool(policy)], Limits::default(), "10.77.0.2:80", 1024)
}

fn decide(g: &Gateway, input: &[u8]) -> (Verdict, String) {
    decide_from(g, input, false)
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
            route: None,
            rate_limited: false,
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
            rate_limit: None,
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
            rate_limit: None,
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

const SECOND: u64 = 1_000_000_000;
const NOW: u64 = 5_000 * SECOND;

/// Route 0 `/direct` answered directly and route 1 `/` proxied, both limited to `rate`/s with
/// `burst`, counted by `key`; `table` shared if given.
fn limited(rate: f64, burst: u32, key: LimitKey, table: Option<Arc<RateTable>>) -> Gateway {
    let limit = Some(RateLimit {
        gcra: crate::ratelimit::Gcra::new(rate, burst).unwrap(),
        key,
    });
    let routes = RouteTable::new(vec![
        Route {
            name: "direct".into(),
            host: HostMatch::Any,
            path_prefix: "/direct".into(),
            methods: None,
            action: RouteAction::Direct(DirectAnswer {
                status: 200,
                headers: vec![],
                body: b"ok\n".as_slice().into(),
            }),
            rate_limit: limit.clone(),
        },
        Route {
            name: "app".into(),
            host: HostMatch::Any,
            path_prefix: "/".into(),
            methods: None,
            action: RouteAction::Proxy {
                pool: 0,
                host_rewrite: None,
            },
            rate_limit: limit,
        },
    ]);
    let g = Gateway::new(
        &routes,
        &[pool(Policy::RoundRobin)],
        Limits::default(),
        "10.77.0.2:80",
        1024,
    );
    match table {
        Some(table) => g.with_rate_table(table),
        None => g,
    }
}

fn decide_at(g: &Gateway, input: &[u8], client: Ipv4Addr, now: u64) -> (Verdict, String) {
    let mut out = vec![0u8; 8192];
    let verdict = g.decide(input, client.into(), now, &mut out);
    let written = match verdict {
        Verdict::Respond { written, .. } => written,
        Verdict::Forward(f) => f.written,
        Verdict::Incomplete => 0,
    };
    (verdict, String::from_utf8_lossy(&out[..written]).into_owned())
}

fn status_of(verdict: Verdict) -> u16 {
    match verdict {
        Verdict::Respond { status, .. } => status,
        Verdict::Forward(_) => 0,
        Verdict::Incomplete => 1,
    }
}

#[test]
fn over_its_rate_a_direct_route_answers_429_with_retry_after_and_keeps_the_connection() {
    let g = limited(1.0, 2, LimitKey::ClientIp, None);
    let get = b"GET /direct HTTP/1.1\r\nHost: gw\r\n\r\n";
    for _ in 0..2 {
        assert_eq!(status_of(decide_at(&g, get, CLIENT, NOW).0), 200);
    }
    let (verdict, text) = decide_at(&g, get, CLIENT, NOW);
    assert_eq!(
        verdict,
        Verdict::Respond {
            consumed: get.len(),
            written: text.len(),
            close: false,
            status: 429,
            route: Some(0),
            rate_limited: true,
        }
    );
    assert_eq!(
        text,
        "HTTP/1.1 429 Too Many Requests\r\nServer: xgate\r\nContent-Type: text/plain\r\n\
         Retry-After: 1\r\nContent-Length: 18\r\n\r\nToo Many Requests\n"
    );
    // HEAD gets no body; HTTP/1.0 keep-alive and close are as for other direct answers.
    let (_, text) = decide_at(&g, b"HEAD /direct HTTP/1.1\r\nHost: gw\r\n\r\n", CLIENT, NOW);
    assert!(text.ends_with("Content-Length: 18\r\n\r\n"), "{text}");
    let (_, text) = decide_at(
        &g,
        b"GET /direct HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        CLIENT,
        NOW,
    );
    assert!(text.contains("\r\nConnection: keep-alive\r\n"), "{text}");
    let (verdict, text) = decide_at(
        &g,
        b"GET /direct HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
        CLIENT,
        NOW,
    );
    assert!(matches!(verdict, Verdict::Respond { close: true, .. }));
    assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
    // Refusals were not charged: one interval later, exactly one more passes.
    assert_eq!(status_of(decide_at(&g, get, CLIENT, NOW + SECOND).0), 200);
    assert_eq!(status_of(decide_at(&g, get, CLIENT, NOW + SECOND).0), 429);
}

#[test]
fn retry_after_says_when_the_next_request_passes() {
    let g = limited(0.25, 1, LimitKey::ClientIp, None);
    let get = b"GET /direct HTTP/1.1\r\nHost: gw\r\n\r\n";
    assert_eq!(status_of(decide_at(&g, get, CLIENT, NOW).0), 200);
    let (_, text) = decide_at(&g, get, CLIENT, NOW);
    assert!(text.contains("\r\nRetry-After: 4\r\n"), "{text}");
    let (_, text) = decide_at(&g, get, CLIENT, NOW + SECOND / 2);
    assert!(text.contains("\r\nRetry-After: 4\r\n"), "{text}");
    let (_, text) = decide_at(&g, get, CLIENT, NOW + 3 * SECOND + 1);
    assert!(text.contains("\r\nRetry-After: 1\r\n"), "{text}");
    assert_eq!(status_of(decide_at(&g, get, CLIENT, NOW + 4 * SECOND).0), 200);
}

#[test]
fn a_limited_proxied_request_is_charged_once_and_its_body_handled_like_a_direct_answer() {
    let g = limited(1.0, 1, LimitKey::ClientIp, None);
    let post = b"POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n\r\nbody";
    // Admitted: forwarded at once (the body streams), charged once.
    assert!(matches!(
        decide_at(&g, &post[..post.len() - 4], CLIENT, NOW).0,
        Verdict::Forward(_)
    ));
    // Over the limit with the body still arriving: wait for it, charge nothing.
    assert_eq!(
        decide_at(&g, &post[..post.len() - 2], CLIENT, NOW).0,
        Verdict::Incomplete
    );
    // With the body: 429, the whole request consumed, the connection kept.
    let (verdict, _) = decide_at(&g, post, CLIENT, NOW);
    assert!(
        matches!(verdict, Verdict::Respond { status: 429, close: false, consumed, route: Some(1), rate_limited: true, .. } if consumed == post.len()),
        "{verdict:?}"
    );
    // A body larger than the buffer: 429 and close, everything consumed.
    let big = b"POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 100000\r\n\r\nabc";
    let (verdict, text) = decide_at(&g, big, CLIENT, NOW);
    assert!(
        matches!(verdict, Verdict::Respond { status: 429, close: true, consumed, .. } if consumed == big.len()),
        "{verdict:?}"
    );
    assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
    // Once the interval has passed, the waiting request is admitted and forwarded.
    assert!(matches!(
        decide_at(&g, post, CLIENT, NOW + SECOND).0,
        Verdict::Forward(_)
    ));
}

#[test]
fn limits_count_per_client_per_header_value_and_per_route() {
    // A large table: the random hash makes a collision between these few keys (which would
    // share a budget) a one in a hundred thousand chance.
    let table = || Some(Arc::new(RateTable::new(1 << 20)));
    let other = Ipv4Addr::new(10, 77, 0, 5);
    let get = b"GET /x HTTP/1.1\r\nHost: gw\r\n\r\n";
    let g = limited(1.0, 1, LimitKey::ClientIp, table());
    assert_eq!(status_of(decide_at(&g, get, CLIENT, NOW).0), 0);
    assert_eq!(status_of(decide_at(&g, get, CLIENT, NOW).0), 429);
    assert_eq!(status_of(decide_at(&g, get, other, NOW).0), 0, "another client");
    let direct = b"GET /direct HTTP/1.1\r\nHost: gw\r\n\r\n";
    assert_eq!(
        status_of(decide_at(&g, direct, CLIENT, NOW).0),
        200,
        "another route"
    );

    let g = limited(1.0, 1, LimitKey::Header("x-api-key".into()), table());
    let alice = b"GET /x HTTP/1.1\r\nHost: gw\r\nX-API-Key:  alice \r\n\r\n";
    let bob = b"GET /x HTTP/1.1\r\nHost: gw\r\nx-api-key: bob\r\n\r\n";
    let empty = b"GET /x HTTP/1.1\r\nHost: gw\r\nx-api-key: \r\n\r\n";
    assert_eq!(status_of(decide_at(&g, alice, CLIENT, NOW).0), 0);
    assert_eq!(
        status_of(decide_at(&g, alice, other, NOW).0),
        429,
        "one key, two clients"
    );
    assert_eq!(status_of(decide_at(&g, bob, CLIENT, NOW).0), 0, "another key");
    // Without the header (or with it empty), the client's address is the key.
    assert_eq!(status_of(decide_at(&g, get, CLIENT, NOW).0), 0);
    assert_eq!(status_of(decide_at(&g, empty, CLIENT, NOW).0), 429);
    assert_eq!(status_of(decide_at(&g, empty, other, NOW).0), 0);
}

/// Lanes share one table: what one lane admitted counts on the other. A reload (a gateway
/// built again from the same routes, with the same table) keeps the budgets; a route under
/// another name starts afresh.
#[test]
fn gateways_sharing_a_table_share_budgets_across_lanes_and_reloads() {
    let table = Arc::new(RateTable::new(1024));
    let lane0 = limited(1.0, 3, LimitKey::ClientIp, Some(Arc::clone(&table)));
    let lane1 = limited(1.0, 3, LimitKey::ClientIp, Some(Arc::clone(&table)));
    let get = b"GET /direct HTTP/1.1\r\nHost: gw\r\n\r\n";
    assert_eq!(status_of(decide_at(&lane0, get, CLIENT, NOW).0), 200);
    assert_eq!(status_of(decide_at(&lane1, get, CLIENT, NOW).0), 200);
    assert_eq!(status_of(decide_at(&lane0, get, CLIENT, NOW).0), 200);
    assert_eq!(status_of(decide_at(&lane1, get, CLIENT, NOW).0), 429);
    let reloaded = limited(1.0, 3, LimitKey::ClientIp, Some(Arc::clone(&table)));
    assert_eq!(status_of(decide_at(&reloaded, get, CLIENT, NOW).0), 429);
    // Without a shared table, a gateway counts on its own.
    let alone = limited(1.0, 3, LimitKey::ClientIp, None);
    assert_eq!(status_of(decide_at(&alone, get, CLIENT, NOW).0), 200);
}

/// `decide_from` as a client over TLS (`https`) or not.
fn decide_from(g: &Gateway, input: &[u8], https: bool) -> (Verdict, String) {
    let mut out = vec![0u8; 8192];
    let verdict = g.decide_from(
        input,
        Client {
            ip: CLIENT.into(),
            https,
        },
        0,
        &mut out,
    );
    let written = match verdict {
        Verdict::Respond { written, .. } => written,
        Verdict::Forward(f) => f.written,
        Verdict::Incomplete => 0,
    };
    (verdict, String::from_utf8_lossy(&out[..written]).into_owned())
}

#[test]
fn https_policies_redirect_plain_http_and_add_hsts_over_tls() {
    let policy = HttpsPolicy {
        redirect: true,
        hsts_max_age: Some(600),
    };
    let g = gateway(Policy::RoundRobin).with_https(8443, vec![policy, policy]);
    // Plain HTTP: a 301 to the same host (its port dropped) and target on the HTTPS port.
    let (verdict, text) = decide_from(&g, b"GET /healthz?x=1 HTTP/1.1\r\nHost: a.test:80\r\n\r\n", false);
    assert!(matches!(verdict, Verdict::Respond { status: 301, .. }), "{text}");
    assert!(
        text.contains("\r\nLocation: https://a.test:8443/healthz?x=1\r\n"),
        "{text}"
    );
    assert!(!text.contains("Strict-Transport-Security"), "{text}");
    // Over TLS: answered, with HSTS; proxied, with HSTS for the response and
    // X-Forwarded-Proto: https upstream.
    let (verdict, text) = decide_from(&g, b"GET /healthz HTTP/1.1\r\nHost: a.test\r\n\r\n", true);
    assert!(matches!(verdict, Verdict::Respond { status: 200, .. }), "{text}");
    assert!(
        text.contains("\r\nStrict-Transport-Security: max-age=600\r\n"),
        "{text}"
    );
    let (verdict, text) = decide_from(&g, b"GET /x HTTP/1.1\r\nHost: api.example.com\r\n\r\n", true);
    let Verdict::Forward(forward) = verdict else {
        panic!("{verdict:?}");
    };
    assert_eq!(forward.hsts_max_age, Some(600));
    assert!(text.contains("\r\nX-Forwarded-Proto: https\r\n"), "{text}");
    // Without policies (or without HTTPS), nothing changes.
    let plain = gateway(Policy::RoundRobin);
    let (verdict, text) = decide_from(&plain, b"GET /healthz HTTP/1.1\r\nHost: a.test\r\n\r\n", false);
    assert!(matches!(verdict, Verdict::Respond { status: 200, .. }), "{text}");
    let (_, text) = decide_from(&plain, b"GET /x HTTP/1.1\r\nHost: api.example.com\r\n\r\n", false);
    assert!(text.contains("\r\nX-Forwarded-Proto: http\r\n"), "{text}");
}
