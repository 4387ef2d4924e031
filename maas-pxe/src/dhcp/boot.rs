//! The boot method table: which file each kind of firmware gets, as data.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use maas_net::BootArchitecture;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::ConfigError;
use super::options::PxeVendorOptions;

/// The port MAAS serves boot files and iPXE scripts on over HTTP.
pub const MAAS_HTTP_PORT: u16 = 5248;

/// How one boot method is answered.
///
/// Strings are templates: `{server}` is replaced by the address of the server answering (in
/// brackets for IPv6, so it can sit in a URL). A boot file with `://` in it is a URL, sent as
/// it is; otherwise it is a path on the TFTP server.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootMethod {
    /// The boot file: a TFTP path (`bootx64.efi`) or a URL
    /// (`http://{server}:5248/images/bootx64.efi`). Sent in the `file` header field and, when
    /// asked for or too long for that field, in option 67; for DHCPv6, as option 59 (a TFTP
    /// path becomes `tftp://[server]/path`).
    pub file: String,
    /// Option 210, the PXELINUX path prefix: where PXELINUX looks for its configuration and
    /// modules (a relative path, or a URL for lpxelinux).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Send option 210 even when the client did not ask for it. PXELINUX reads the ROM's
    /// DHCP answer and the ROM never asks for 210, so MAAS forces it for BIOS PXE.
    #[serde(default, skip_serializing_if = "is_false")]
    pub force_path_prefix: bool,
    /// Option 209, the PXELINUX configuration file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
    /// Option 211, the PXELINUX reboot time in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_time: Option<u32>,
    /// Answer with vendor class `HTTPClient`: UEFI HTTP boot ignores offers without it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub http_client: bool,
    /// The boot file is an iPXE build. An iPXE client is never sent it, which would make it
    /// load itself again for ever.
    #[serde(default, skip_serializing_if = "is_false")]
    pub loads_ipxe: bool,
    /// DHCPv6 option 60, boot-file parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl BootMethod {
    /// A method that only names a boot file.
    pub fn file(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            path_prefix: None,
            force_path_prefix: false,
            config_file: None,
            reboot_time: None,
            http_client: false,
            loads_ipxe: false,
            params: Vec::new(),
        }
    }

    /// Sets the path prefix (option 210); `force` sends it unasked.
    pub fn with_path_prefix(mut self, prefix: impl Into<String>, force: bool) -> Self {
        self.path_prefix = Some(prefix.into());
        self.force_path_prefix = force;
        self
    }

    /// Marks the method as UEFI HTTP boot (vendor class `HTTPClient` in the answer).
    pub fn http(mut self) -> Self {
        self.http_client = true;
        self
    }

    fn check(&self, arch: BootArchitecture) -> Result<(), ConfigError> {
        let method = arch.name().to_string();
        if self.file.is_empty() {
            return Err(ConfigError::EmptyFile { method });
        }
        let fields = [
            ("file", Some(&self.file)),
            ("path_prefix", self.path_prefix.as_ref()),
            ("config_file", self.config_file.as_ref()),
        ];
        let params = self.params.iter().map(|p| ("params", Some(p)));
        for (field, value) in fields.into_iter().chain(params) {
            let Some(value) = value else { continue };
            check_template(&method, field, value)?;
            if value.contains('\0') {
                return Err(ConfigError::Nul {
                    method,
                    field,
                    value: value.clone(),
                });
            }
        }
        Ok(())
    }
}

/// The boot method table and the answers that go with it, as a deployment configures them.
///
/// [`BootConfig::default`] is MAAS's table:
///
/// | method | architecture | answer |
/// |---|---|---|
/// | `ipxe` | user class `iPXE` | `http://{server}:5248/ipxe.cfg` |
/// | `pxe` | 0 (BIOS) | `lpxelinux.0`, path prefix `http://{server}:5248/` sent unasked |
/// | `uefi_amd64_tftp` | 7 | `bootx64.efi` |
/// | `uefi_ebc_tftp` | 9 | `bootx64.efi` |
/// | `uefi_amd64_http` | 16 | `http://{server}:5248/images/bootx64.efi`, `HTTPClient` |
/// | `uefi_arm64_tftp` | 11 | `bootaa64.efi` |
/// | `uefi_arm64_http` | 19 | `http://{server}:5248/images/bootaa64.efi`, `HTTPClient` |
/// | `open-firmware_ppc64el` | 12 | `bootppc64.bin` |
/// | `powernv` | 14 | `pxelinux.0`, path prefix `ppc64el/` |
/// | `s390x` | 31 | `boots390x.bin`, path prefix `s390x/` |
/// | `s390x_partition` | 32 | `s390x_partition/maas` |
///
/// A client that names no architecture the table knows gets the `fallback` method (`pxe`, as
/// MAAS's `else` branch does for old BIOS ROMs that send no option 93); over DHCPv6 there is
/// no fallback by default. PXE clients are answered with vendor class `PXEClient` and the
/// `pxe_vendor_options` (discovery control 8: boot the offered file, skip boot-server
/// discovery) unless those are empty; ProxyDHCP answers carry `proxy_vendor_options`.
///
/// Everything is serde, so a deployment overrides the table in its configuration file; the
/// `methods` table, when given, replaces MAAS's whole. Deserializing checks the templates;
/// [`validate`](Self::validate) does the same for a table built in code.
///
/// ```
/// use maas_net::BootArchitecture;
/// use maas_pxe::dhcp::{BootConfig, BootMethod};
///
/// let mut config = BootConfig::default();
/// assert_eq!(config.methods[&BootArchitecture::UefiArm64Tftp].file, "bootaa64.efi");
/// config.methods.insert(BootArchitecture::UefiAmd64Tftp, BootMethod::file("shimx64.efi"));
/// config.validate()?;
///
/// let text = toml::to_string(&config)?;
/// assert_eq!(toml::from_str::<BootConfig>(&text)?, config);
/// assert!(toml::from_str::<BootConfig>("[methods.pxe]\nfile = \"http://{host}/x\"").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BootConfigDoc")]
pub struct BootConfig {
    /// The boot methods served, by MAAS name.
    pub methods: BTreeMap<BootArchitecture, BootMethod>,
    /// The method for DHCPv4 clients that name no architecture the table knows (`"none"` in
    /// a configuration file for no answer).
    #[serde(with = "optional_method")]
    pub fallback: Option<BootArchitecture>,
    /// The same for DHCPv6 clients.
    #[serde(with = "optional_method")]
    pub fallback_v6: Option<BootArchitecture>,
    /// Option 43 for PXE clients of this DHCP server; empty for no option 43 and no
    /// `PXEClient` vendor class in answers.
    pub pxe_vendor_options: PxeVendorOptions,
    /// Option 43 for ProxyDHCP answers (the boot server and menu forms live here).
    pub proxy_vendor_options: PxeVendorOptions,
    /// The TFTP server (`siaddr`, options 66 and 150); unset, the answering server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tftp_server: Option<Ipv4Addr>,
    /// Option 66, the TFTP server name; unset, the TFTP server's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tftp_server_name: Option<String>,
}

impl Default for BootConfig {
    fn default() -> Self {
        Self {
            methods: Self::maas_methods(),
            fallback: Some(BootArchitecture::Pxe),
            fallback_v6: None,
            pxe_vendor_options: PxeVendorOptions::boot_file_only(),
            proxy_vendor_options: PxeVendorOptions::boot_file_only(),
            tftp_server: None,
            tftp_server_name: None,
        }
    }
}

impl BootConfig {
    /// MAAS's boot method table (see the type's documentation).
    pub fn maas_methods() -> BTreeMap<BootArchitecture, BootMethod> {
        use BootArchitecture as A;
        let http = |file: &str| format!("http://{{server}}:{MAAS_HTTP_PORT}/{file}");
        BTreeMap::from([
            (A::Ipxe, BootMethod::file(http("ipxe.cfg"))),
            (
                A::Pxe,
                BootMethod::file("lpxelinux.0").with_path_prefix(http(""), true),
            ),
            (A::UefiAmd64Tftp, BootMethod::file("bootx64.efi")),
            (A::UefiEbcTftp, BootMethod::file("bootx64.efi")),
            (
                A::UefiAmd64Http,
                BootMethod::file(http("images/bootx64.efi")).http(),
            ),
            (A::UefiArm64Tftp, BootMethod::file("bootaa64.efi")),
            (
                A::UefiArm64Http,
                BootMethod::file(http("images/bootaa64.efi")).http(),
            ),
            (A::OpenFirmwarePpc64el, BootMethod::file("bootppc64.bin")),
            (
                A::Powernv,
                BootMethod::file("pxelinux.0").with_path_prefix("ppc64el/", false),
            ),
            (
                A::S390x,
                BootMethod::file("boots390x.bin").with_path_prefix("s390x/", false),
            ),
            (A::S390xPartition, BootMethod::file("s390x_partition/maas")),
        ])
    }

    /// Points the table's boot HTTP URLs at another port and, with `advertise`, at a fixed
    /// address instead of the answering server's.
    ///
    /// Every method's `file` and `path_prefix` that starts with
    /// `http://{server}:5248/` ([`MAAS_HTTP_PORT`]) is rewritten to
    /// `http://{server}:<port>/`, or to `http://<advertise>:<port>/` (an IPv6 address in
    /// brackets) when `advertise` is given, even when `port` is MAAS's own. Other URLs and
    /// TFTP file names are left alone; with `port` 5248 and no `advertise` nothing changes.
    ///
    /// ```
    /// use maas_net::BootArchitecture;
    /// use maas_pxe::dhcp::BootConfig;
    ///
    /// let mut boot = BootConfig::default();
    /// boot.set_http_base(8080, Some("fd77::1".parse()?));
    /// let http = &boot.methods[&BootArchitecture::UefiAmd64Http];
    /// assert_eq!(http.file, "http://[fd77::1]:8080/images/bootx64.efi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_http_base(&mut self, port: u16, advertise: Option<IpAddr>) {
        if port == MAAS_HTTP_PORT && advertise.is_none() {
            return;
        }
        let maas = format!("http://{{server}}:{MAAS_HTTP_PORT}/");
        let ours = match advertise {
            Some(ip) => format!("http://{}/", SocketAddr::new(ip, port)),
            None => format!("http://{{server}}:{port}/"),
        };
        for method in self.methods.values_mut() {
            for text in std::iter::once(&mut method.file).chain(method.path_prefix.as_mut()) {
                if let Some(rest) = text.strip_prefix(&maas) {
                    *text = format!("{ours}{rest}");
                }
            }
        }
    }

    /// Checks the templates, the fallbacks and the vendor options.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (arch, method) in &self.methods {
            method.check(*arch)?;
        }
        for fallback in [self.fallback, self.fallback_v6].into_iter().flatten() {
            if !self.methods.contains_key(&fallback) {
                return Err(ConfigError::Fallback {
                    method: fallback.name().to_string(),
                });
            }
        }
        self.pxe_vendor_options.encode()?;
        self.proxy_vendor_options.encode()?;
        Ok(())
    }
}

/// What a configuration file holds, before [`BootConfig::validate`].
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct BootConfigDoc {
    methods: BTreeMap<BootArchitecture, BootMethod>,
    #[serde(with = "optional_method")]
    fallback: Option<BootArchitecture>,
    #[serde(with = "optional_method")]
    fallback_v6: Option<BootArchitecture>,
    pxe_vendor_options: PxeVendorOptions,
    proxy_vendor_options: PxeVendorOptions,
    tftp_server: Option<Ipv4Addr>,
    tftp_server_name: Option<String>,
}

impl Default for BootConfigDoc {
    fn default() -> Self {
        let d = BootConfig::default();
        Self {
            methods: d.methods,
            fallback: d.fallback,
            fallback_v6: d.fallback_v6,
            pxe_vendor_options: d.pxe_vendor_options,
            proxy_vendor_options: d.proxy_vendor_options,
            tftp_server: d.tftp_server,
            tftp_server_name: d.tftp_server_name,
        }
    }
}

impl TryFrom<BootConfigDoc> for BootConfig {
    type Error = ConfigError;

    fn try_from(d: BootConfigDoc) -> Result<Self, ConfigError> {
        let config = Self {
            methods: d.methods,
            fallback: d.fallback,
            fallback_v6: d.fallback_v6,
            pxe_vendor_options: d.pxe_vendor_options,
            proxy_vendor_options: d.proxy_vendor_options,
            tftp_server: d.tftp_server,
            tftp_server_name: d.tftp_server_name,
        };
        config.validate()?;
        Ok(config)
    }
}

/// A boot method name, or `"none"`.
mod optional_method {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        value: &Option<BootArchitecture>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value.map_or("none", BootArchitecture::name))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<BootArchitecture>, D::Error> {
        let s = String::deserialize(deserializer)?;
        if s == "none" {
            return Ok(None);
        }
        s.parse().map(Some).map_err(serde::de::Error::custom)
    }
}

/// The text `{server}` stands for: the address, in brackets for IPv6.
pub(crate) fn server_text(server: IpAddr) -> String {
    match server {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// `template` with every `{server}` replaced.
pub(crate) fn expand(template: &str, server: &str) -> String {
    if template.contains('{') {
        template.replace("{server}", server)
    } else {
        template.to_string()
    }
}

/// Checks that the only placeholder in `template` is `{server}`.
fn check_template(method: &str, field: &'static str, template: &str) -> Result<(), ConfigError> {
    let brace = || ConfigError::Brace {
        method: method.to_string(),
        field,
        template: template.to_string(),
    };
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(brace());
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(brace)?;
        let name = &after[..close];
        if name.contains('{') {
            return Err(brace());
        }
        if name != "server" {
            return Err(ConfigError::Placeholder {
                method: method.to_string(),
                field,
                template: template.to_string(),
                placeholder: name.to_string(),
            });
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maas_table() {
        let c = BootConfig::default();
        c.validate().unwrap();
        assert_eq!(c.methods.len(), 11);
        let pxe = &c.methods[&BootArchitecture::Pxe];
        assert_eq!(pxe.file, "lpxelinux.0");
        assert_eq!(pxe.path_prefix.as_deref(), Some("http://{server}:5248/"));
        assert!(pxe.force_path_prefix);
        assert!(c.methods[&BootArchitecture::UefiArm64Http].http_client);
        assert_eq!(
            c.methods[&BootArchitecture::Powernv].path_prefix.as_deref(),
            Some("ppc64el/")
        );
        assert!(c.methods.values().all(|m| !m.loads_ipxe));
    }

    #[test]
    fn templates() {
        assert_eq!(
            expand("http://{server}:5248/{server}", "10.0.0.1"),
            "http://10.0.0.1:5248/10.0.0.1"
        );
        assert_eq!(server_text("fd77::1".parse().unwrap()), "[fd77::1]");
        check_template("m", "file", "plain").unwrap();
        check_template("m", "file", "{server}{server}").unwrap();
        for bad in ["{server", "server}", "{{server}}", "{}", "a}b{"] {
            assert!(check_template("m", "file", bad).is_err(), "{bad}");
        }
        assert_eq!(
            check_template("pxe", "path_prefix", "http://{host}/")
                .unwrap_err()
                .to_string(),
            "boot method pxe: path_prefix \"http://{host}/\" uses the placeholder {host}; the \
             only placeholder is {server}"
        );
    }

    /// Every `file` and `path_prefix` of the table, by method.
    fn urls(c: &BootConfig) -> Vec<(BootArchitecture, String, Option<String>)> {
        c.methods
            .iter()
            .map(|(a, m)| (*a, m.file.clone(), m.path_prefix.clone()))
            .collect()
    }

    #[test]
    fn http_base_on_another_port() {
        let mut c = BootConfig::default();
        c.set_http_base(8080, None);
        let ipxe = &c.methods[&BootArchitecture::Ipxe];
        assert_eq!(ipxe.file, "http://{server}:8080/ipxe.cfg");
        let pxe = &c.methods[&BootArchitecture::Pxe];
        assert_eq!(pxe.file, "lpxelinux.0", "TFTP names stay");
        assert_eq!(pxe.path_prefix.as_deref(), Some("http://{server}:8080/"));
        assert!(
            urls(&c).iter().all(|(_, f, p)| !f.contains(":5248/")
                && !p.as_deref().unwrap_or_default().contains(":5248/")),
            "{:?}",
            urls(&c)
        );
        c.validate().unwrap();
    }

    #[test]
    fn http_base_on_the_default_port_with_an_advertised_address() {
        let mut c = BootConfig::default();
        c.set_http_base(MAAS_HTTP_PORT, Some("10.77.0.5".parse().unwrap()));
        let ipxe = &c.methods[&BootArchitecture::Ipxe];
        assert_eq!(ipxe.file, "http://10.77.0.5:5248/ipxe.cfg");
        let pxe = &c.methods[&BootArchitecture::Pxe];
        assert_eq!(pxe.path_prefix.as_deref(), Some("http://10.77.0.5:5248/"));
        assert!(
            urls(&c).iter().all(|(_, f, p)| !f.contains("{server}")
                && !p.as_deref().unwrap_or_default().contains("{server}")),
            "{:?}",
            urls(&c)
        );
    }

    #[test]
    fn http_base_with_an_ipv6_address() {
        let mut c = BootConfig::default();
        c.set_http_base(8080, Some("fd77::5".parse().unwrap()));
        let http = &c.methods[&BootArchitecture::UefiArm64Http];
        assert_eq!(http.file, "http://[fd77::5]:8080/images/bootaa64.efi");
        let pxe = &c.methods[&BootArchitecture::Pxe];
        assert_eq!(pxe.path_prefix.as_deref(), Some("http://[fd77::5]:8080/"));
    }

    #[test]
    fn http_base_on_the_default_port_alone_changes_nothing() {
        let mut c = BootConfig::default();
        c.set_http_base(MAAS_HTTP_PORT, None);
        assert_eq!(c, BootConfig::default());
    }

    #[test]
    fn validation() {
        let mut c = BootConfig::default();
        c.methods
            .insert(BootArchitecture::Pxe, BootMethod::file(""));
        assert_eq!(
            c.validate().unwrap_err(),
            ConfigError::EmptyFile {
                method: "pxe".into()
            }
        );
        c.methods
            .insert(BootArchitecture::Pxe, BootMethod::file("a\0b"));
        assert!(matches!(c.validate(), Err(ConfigError::Nul { .. })));
        c.methods.remove(&BootArchitecture::Pxe);
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "the fallback boot method pxe has no entry in the boot method table"
        );
        c.fallback = None;
        c.validate().unwrap();
    }

    #[test]
    fn serde_forms() {
        let c: BootConfig = toml::from_str("").unwrap();
        assert_eq!(c, BootConfig::default());
        let c: BootConfig = toml::from_str(
            "fallback = \"none\"\npxe_vendor_options = {}\n\
             [methods.uefi_amd64_tftp]\nfile = \"grubx64.efi\"\n",
        )
        .unwrap();
        assert_eq!(c.fallback, None);
        assert_eq!(c.methods.len(), 1);
        assert_eq!(c.pxe_vendor_options, PxeVendorOptions::default());
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<BootConfig>(&json).unwrap(), c);
        assert!(toml::from_str::<BootConfig>("fallback = \"windows\"").is_err());
        assert!(toml::from_str::<BootConfig>("colour = \"blue\"").is_err());
        assert!(toml::from_str::<BootConfig>("[methods.pxe]\nfile = \"x\"\nsize = 1").is_err());
        let err = toml::from_str::<BootConfig>("[methods.ipxe]\nfile = \"\"").unwrap_err();
        assert!(
            err.to_string()
                .contains("boot method ipxe: the boot file is empty"),
            "{err}"
        );
    }
}
