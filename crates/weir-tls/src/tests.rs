use super::*;

fn cert(arn: &str, names: &[&str]) -> Arc<LoadedCertificate> {
    let c =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("rcgen");
    parse(arn, c.cert.pem().as_bytes(), c.key_pair.serialize_pem().as_bytes()).expect("parse")
}

#[test]
fn sni_prefers_exact_then_wildcard_then_default() {
    let certs = vec![
        cert("arn:aws:acm:us-east-1:1:certificate/default", &["default.test"]),
        cert("arn:aws:acm:us-east-1:1:certificate/wild", &["*.example.com"]),
        cert("arn:aws:acm:us-east-1:1:certificate/exact", &["api.example.com"]),
    ];
    let pick =
        |sni: Option<&str>| select(&certs, sni).map(|c| c.arn.rsplit('/').next().unwrap_or(""));
    assert_eq!(pick(Some("api.example.com")), Some("exact"));
    assert_eq!(pick(Some("API.Example.com.")), Some("exact"));
    assert_eq!(pick(Some("www.example.com")), Some("wild"));
    // A wildcard covers one label only.
    assert_eq!(pick(Some("a.b.example.com")), Some("default"));
    assert_eq!(pick(Some("example.com")), Some("default"));
    assert_eq!(pick(None), Some("default"));
    assert!(select(&[], Some("x")).is_none());
}

#[test]
fn arn_names_a_plain_file() {
    assert_eq!(
        CertificateStore::name_of("arn:aws:acm:us-east-1:1:certificate/site-1").unwrap(),
        "site-1"
    );
    for bad in [
        "site",
        "arn:aws:acm:us-east-1:1:certificate/",
        "arn:aws:acm:us-east-1:1:certificate/../etc/passwd",
        "arn:aws:acm:us-east-1:1:certificate/a/b",
        "arn:aws:acm:us-east-1:1:certificate/.hidden",
    ] {
        assert!(CertificateStore::name_of(bad).is_err(), "{bad}");
    }
}

#[test]
fn store_reads_pem_or_crt_and_key() {
    let dir = std::env::temp_dir().join(format!("weir-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
    std::fs::write(dir.join("one.pem"), format!("{}{}", c.cert.pem(), c.key_pair.serialize_pem()))
        .unwrap();
    std::fs::write(dir.join("two.crt"), c.cert.pem()).unwrap();
    std::fs::write(dir.join("two.key"), c.key_pair.serialize_pem()).unwrap();
    std::fs::write(dir.join("bad.pem"), "not pem").unwrap();
    let store = CertificateStore::new(&dir);
    let one = store.load("arn:aws:acm:r:1:certificate/one").unwrap();
    assert_eq!(one.names, vec!["a.test".to_string()]);
    assert!(store.load("arn:aws:acm:r:1:certificate/two").is_ok());
    assert!(matches!(
        store.load("arn:aws:acm:r:1:certificate/three"),
        Err(TlsError::NotFound { .. })
    ));
    assert!(matches!(store.load("arn:aws:acm:r:1:certificate/bad"), Err(TlsError::Invalid { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn policies_map_to_rustls() {
    let p = weir_model::tls_policies::policy("ELBSecurityPolicy-TLS13-1-3-2021-06").unwrap();
    let (v, s) = policy_parts(p);
    assert_eq!(v, vec![&rustls::version::TLS13]);
    assert_eq!(s.len(), 3);
    let p = weir_model::tls_policies::policy("ELBSecurityPolicy-TLS-1-2-2017-01").unwrap();
    let (v, s) = policy_parts(p);
    assert_eq!(v, vec![&rustls::version::TLS12]);
    assert_eq!(
        s.iter().map(|s| cipher_name(*s)).collect::<Vec<_>>(),
        [
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-RSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            "ECDHE-RSA-AES256-GCM-SHA384"
        ]
    );
    for p in weir_model::tls_policies::POLICIES {
        let c = cert("arn:aws:acm:r:1:certificate/x", &["x.test"]);
        assert!(server_config(p, vec![c], true).is_ok(), "{}", p.name);
    }
}

#[test]
fn serial_numbers_are_read_from_the_leaf() {
    let mut params =
        rcgen::CertificateParams::new(vec!["serial.test".to_string()]).expect("params");
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x00, 0x0a, 0xbc, 0x01]));
    let key = rcgen::KeyPair::generate().expect("key");
    let c = params.self_signed(&key).expect("sign");
    let loaded = parse("arn:x", c.pem().as_bytes(), key.serialize_pem().as_bytes()).expect("parse");
    assert_eq!(loaded.serial, "0abc01");
    assert_eq!(serial_number(b"\x30\x03\x02\x01"), None, "truncated DER is not a serial");
}
