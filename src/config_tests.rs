use super::*;

fn cfg(env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let args = ServeArgs {
        home: HomeArg {
            home: Some(dir.path().to_path_buf()),
        },
        bind: None,
    };
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_sources(&args, &env)
}

#[test]
fn defaults_and_port() {
    let c = cfg(&[]).unwrap();
    assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
    assert_eq!(c.max_body_bytes, 1024 * 1024);
    let c = cfg(&[("PORT", "9123")]).unwrap();
    assert_eq!(c.bind.to_string(), "127.0.0.1:9123");
}

#[test]
fn invalid_values_name_the_setting() {
    let e = cfg(&[("PORT", "abc")]).unwrap_err();
    assert_eq!(e.setting, "PORT");
    let e = cfg(&[("ROLES_JSON", "{not json")]).unwrap_err();
    assert_eq!(e.setting, "ROLES_JSON");
    let e = cfg(&[("ROLES_JSON", r#"{"abcdefghijklmnopq": "root"}"#)]).unwrap_err();
    assert!(e.to_string().contains("ROLES_JSON"));
    assert!(
        !e.to_string().contains("abcdefghijklmnopq"),
        "key leaked: {e}"
    );
    let e = cfg(&[("TRUST_PROXY", "maybe")]).unwrap_err();
    assert_eq!(e.setting, "TRUST_PROXY");
}

#[test]
fn secrets_hidden_from_debug() {
    let c = cfg(&[
        ("DASHBOARD_KEY", "super-secret-admin-key-123"),
        ("ROLES_JSON", r#"{"viewer-key-0123456789": "viewer"}"#),
    ])
    .unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("super-secret-admin-key-123"));
    assert!(!dbg.contains("viewer-key-0123456789"));
    assert_eq!(c.roles[0].1, Role::Viewer);
}

#[test]
fn toml_file_settings_and_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("echopilot.toml"),
        "slow_request_ms = 250\n[commands.echo]\nprogram = \"/bin/echo\"\n",
    )
    .unwrap();
    let args = ServeArgs {
        home: HomeArg {
            home: Some(dir.path().to_path_buf()),
        },
        bind: None,
    };
    let c = Config::from_sources(&args, &HashMap::new()).unwrap();
    assert_eq!(c.slow_request_ms, 250);
    assert_eq!(c.commands["echo"].program, "/bin/echo");
    // The environment wins over the file.
    let env = HashMap::from([("SLOW_REQUEST_MS".to_string(), "10".to_string())]);
    assert_eq!(
        Config::from_sources(&args, &env).unwrap().slow_request_ms,
        10
    );

    std::fs::write(dir.path().join("echopilot.toml"), "slow_reqest_ms = 1\n").unwrap();
    let e = Config::from_sources(&args, &HashMap::new()).unwrap_err();
    assert!(e.to_string().contains("slow_reqest_ms"), "{e}");
    std::fs::write(dir.path().join("echopilot.toml"), "dashboard_key = \"x\"\n").unwrap();
    let e = Config::from_sources(&args, &HashMap::new()).unwrap_err();
    assert!(e.to_string().contains("environment"), "{e}");
}

#[test]
fn weak_or_ambiguous_keys_are_refused_without_naming_them() {
    let admin = "admin-key-0123456789abcdef";
    let e = cfg(&[("DASHBOARD_KEY", "abc")]).unwrap_err();
    assert_eq!(e.setting, "DASHBOARD_KEY");
    assert!(e.reason.contains("shorter than 16"), "{e}");
    assert!(!e.to_string().contains("abc"), "key leaked: {e}");
    assert!(cfg(&[("DASHBOARD_KEY", "0123456789abcdef")]).is_ok());

    let dup = r#"{"viewer-key-0123456789": "viewer", "viewer-key-0123456789": "admin"}"#;
    let e = cfg(&[("ROLES_JSON", dup)]).unwrap_err();
    assert_eq!(e.setting, "ROLES_JSON");
    assert!(
        e.reason.contains("entries 1 and 2 have the same key"),
        "{e}"
    );
    assert!(!e.to_string().contains("viewer-key"), "key leaked: {e}");

    let same = format!(r#"{{"op-key-0123456789abcdef": "operator", "{admin}": "viewer"}}"#);
    let e = cfg(&[("DASHBOARD_KEY", admin), ("ROLES_JSON", &same)]).unwrap_err();
    assert_eq!(e.setting, "ROLES_JSON");
    assert!(
        e.reason
            .contains("entry 2 is the same key as DASHBOARD_KEY"),
        "{e}"
    );
    assert!(!e.to_string().contains(admin), "key leaked: {e}");
}
