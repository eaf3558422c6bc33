use super::*;

fn host(pattern: &str) -> HostMatch {
    HostMatch::parse(pattern).unwrap()
}

fn proxy_route(name: &str, host: HostMatch, prefix: &str, methods: Option<&[&str]>) -> Route {
    Route {
        name: name.into(),
        host,
        path_prefix: prefix.into(),
        methods: methods.map(|m| MethodSet::parse(m).unwrap()),
        action: RouteAction::Proxy {
            pool: 0,
            host_rewrite: None,
        },
        rate_limit: None,
    }
}

fn answer(status: u16) -> DirectAnswer {
    DirectAnswer {
        status,
        headers: vec![],
        body: Box::from(&b"hi"[..]),
    }
}

#[test]
fn host_parse_normalizes() {
    assert_eq!(host("Example.COM"), HostMatch::Exact("example.com".into()));
    assert_eq!(host("example.com."), HostMatch::Exact("example.com".into()));
    assert_eq!(host("*.Example.com"), HostMatch::Suffix(".example.com".into()));
    assert_eq!(host("10.0.0.1"), HostMatch::Exact("10.0.0.1".into()));
}

#[test]
fn host_parse_rejects() {
    for bad in [
        "",
        ".",
        "*",
        "*.",
        "a b",
        " example.com",
        "a*.example.com",
        "*example.com",
        "example.*",
        "*.*.example.com",
        "example.com:80",
        "a..b",
        ".example.com",
        "ex/ample",
    ] {
        assert!(HostMatch::parse(bad).is_err(), "{bad:?} should be rejected");
    }
    assert!(HostMatch::parse("a b").unwrap_err().contains("whitespace"));
    assert!(HostMatch::parse("a*.b").unwrap_err().contains('*'));
    assert!(HostMatch::parse("a:1").unwrap_err().contains("port"));
}

#[test]
fn exact_host_ignores_case_port_and_trailing_dot() {
    let exact = host("example.com");
    for raw in [
        "example.com",
        "EXAMPLE.com",
        "Example.COM.:8080",
        "example.com:80",
        "example.com.",
        " example.com ",
        "example.com:",
    ] {
        assert!(exact.matches(Some(raw.as_bytes())), "{raw:?} should match");
    }
    for raw in [
        "example.co",
        "www.example.com",
        "example.com.evil",
        "example.com:8x",
        "",
        ":80",
    ] {
        assert!(!exact.matches(Some(raw.as_bytes())), "{raw:?} should not match");
    }
    assert!(!exact.matches(None));
}

#[test]
fn suffix_host_needs_a_label_in_front() {
    let suffix = host("*.example.com");
    for raw in ["a.example.com", "a.b.example.com", "A.EXAMPLE.COM.:443"] {
        assert!(suffix.matches(Some(raw.as_bytes())), "{raw:?} should match");
    }
    for raw in [
        "example.com",
        ".example.com",
        "aexample.com",
        "a.example.com.evil",
        "a.example.org",
    ] {
        assert!(!suffix.matches(Some(raw.as_bytes())), "{raw:?} should not match");
    }
    assert!(!suffix.matches(None));
}

#[test]
fn any_host_matches_missing_host() {
    assert!(HostMatch::Any.matches(None));
    assert!(HostMatch::Any.matches(Some(b"whatever:1")));
}

#[test]
fn bracketed_host_keeps_its_colons() {
    assert_eq!(normalize_host(b"[::1]:8080"), b"[::1]");
    assert_eq!(normalize_host(b"[::1]"), b"[::1]");
}

#[test]
fn path_prefix_is_segment_aware() {
    assert!(path_has_prefix("/api", "/api"));
    assert!(path_has_prefix("/api/x", "/api"));
    assert!(path_has_prefix("/api?", "/api"));
    assert!(!path_has_prefix("/apix", "/api"));
    assert!(!path_has_prefix("/ap", "/api"));
    assert!(path_has_prefix("/api/", "/api/"));
    assert!(path_has_prefix("/api/x/y", "/api/"));
    assert!(!path_has_prefix("/api", "/api/"));
    assert!(path_has_prefix("/", "/"));
    assert!(path_has_prefix("/anything/at/all", "/"));
    assert!(!path_has_prefix("/API", "/api"));
}

#[test]
fn method_set_parse_and_contains() {
    let set = MethodSet::parse(&["post", "Put"]).unwrap();
    assert!(set.contains("POST") && set.contains("PUT"));
    assert!(!set.contains("post"), "wire methods are case-sensitive");
    assert!(!set.contains("GET") && !set.contains("HEAD") && !set.contains("BREW"));
    assert_eq!(set.iter().collect::<Vec<_>>(), ["POST", "PUT"]);

    let get = MethodSet::parse(&["GET".to_string()]).unwrap();
    assert!(get.contains("GET") && get.contains("HEAD"), "GET brings HEAD");

    let all = MethodSet::parse(&KNOWN_METHODS).unwrap();
    assert!(KNOWN_METHODS.iter().all(|m| all.contains(m)));
}

#[test]
fn method_set_rejects_unknown_and_empty() {
    let err = MethodSet::parse(&["GET", "BREW"]).unwrap_err();
    assert!(err.contains("BREW"), "{err}");
    assert!(MethodSet::parse(&[] as &[&str]).is_err());
}

#[test]
fn direct_answer_validation() {
    assert!(answer(200).validate().is_ok());
    assert!(answer(599).validate().is_ok());
    assert!(answer(199).validate().unwrap_err().contains("status"));
    assert!(answer(600).validate().unwrap_err().contains("status"));
    assert!(answer(204).validate().unwrap_err().contains("body"));

    let mut with_headers = answer(302);
    with_headers.headers = vec![("Location".into(), "/new".into())];
    assert!(with_headers.validate().is_ok());
    for (name, value) in [
        ("Bad Name", "x"),
        ("", "x"),
        ("X-A", "a\r\nb"),
        ("Content-Length", "2"),
    ] {
        let mut bad = answer(200);
        bad.headers = vec![("X-Ok".into(), "1".into()), (name.into(), value.into())];
        let err = bad.validate().unwrap_err();
        assert!(err.starts_with("headers[1]"), "{err}");
    }
}

#[test]
fn route_validation_names_the_field() {
    let mut route = proxy_route("r", HostMatch::Any, "/", None);
    assert!(route.validate(1).is_ok());
    assert!(route.validate(0).unwrap_err().starts_with("action.pool"));
    route.path_prefix = "api".into();
    assert!(route.validate(1).unwrap_err().starts_with("path_prefix"));
    route.path_prefix = "/api?x".into();
    assert!(route.validate(1).unwrap_err().starts_with("path_prefix"));
    route.path_prefix = "/".into();
    route.name = "".into();
    assert!(route.validate(1).unwrap_err().starts_with("name"));
    route.name = "r".into();
    route.action = RouteAction::Direct(answer(700));
    assert!(route.validate(1).unwrap_err().starts_with("action.status"));
    route.action = RouteAction::Proxy {
        pool: 0,
        host_rewrite: Some("a b".into()),
    };
    assert!(route.validate(1).unwrap_err().starts_with("action.host_rewrite"));
}

#[test]
fn first_matching_route_wins() {
    let table = RouteTable::new(vec![
        proxy_route("api-write", host("example.com"), "/api", Some(&["POST", "PUT"])),
        proxy_route("api", host("example.com"), "/api", None),
        proxy_route("wild", host("*.example.com"), "/", Some(&["GET"])),
        proxy_route("static", HostMatch::Any, "/static/", None),
        proxy_route("fallback", HostMatch::Any, "/", None),
    ]);
    let name = |h: Option<&str>, m: &str, p: &str| {
        table.find(h.map(str::as_bytes), m, p).map(|(i, r)| (i, &*r.name))
    };
    assert_eq!(
        name(Some("Example.COM.:8080"), "POST", "/api/x"),
        Some((0, "api-write"))
    );
    assert_eq!(name(Some("example.com"), "GET", "/api"), Some((1, "api")));
    assert_eq!(name(Some("example.com"), "GET", "/apix"), Some((4, "fallback")));
    assert_eq!(name(Some("www.example.com"), "HEAD", "/api"), Some((2, "wild")));
    assert_eq!(
        name(Some("www.example.com"), "POST", "/static/a.css"),
        Some((3, "static"))
    );
    assert_eq!(name(None, "GET", "/api"), Some((4, "fallback")));
    assert_eq!(table.routes().len(), 5);
}

#[test]
fn no_route_matches() {
    let table = RouteTable::new(vec![proxy_route("only", host("example.com"), "/api", None)]);
    assert!(table.find(Some(b"example.com"), "GET", "/").is_none());
    assert!(table.find(Some(b"other.com"), "GET", "/api").is_none());
    assert!(table.find(None, "GET", "/api").is_none());
    assert!(RouteTable::new(vec![]).find(None, "GET", "/").is_none());
}
