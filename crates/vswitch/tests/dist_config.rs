//! The example configuration shipped in dist/ parses and passes the checks.

#[test]
fn dist_switch_toml_is_valid() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/switch.toml");
    let c = ferrovia_vswitch::SwitchConfig::load(&p).unwrap();
    assert_eq!(c.port.len(), 3);
    assert_eq!(c.router_interface.len(), 2);
}
