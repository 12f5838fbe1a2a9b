//! The flags CI scripts pass to `docker buildx build` that are not about the
//! Dockerfile: `--add-host`, `--shm-size`, `--annotation`, and the attestation flags
//! (`--attest`, `--sbom`, `--provenance`), refused rather than ignored.

use std::net::IpAddr;

/// `--attest`, `--sbom` and `--provenance` ask for attestations this builder does not
/// make: better an error than an image without what was asked for.
pub fn unsupported_flags(args: &crate::cli::BuildMoreArgs) -> Result<(), String> {
    let disabled = |v: &str| matches!(v, "false" | "0" | "disabled=true") || v.ends_with(",disabled=true");
    let asked = [
        ("--attest", args.attest.first().cloned()),
        ("--sbom", args.sbom.clone()),
        ("--provenance", args.provenance.clone()),
    ];
    for (flag, value) in asked {
        if let Some(value) = value.filter(|v| !disabled(v)) {
            return Err(format!("{flag} {value:?}: attestations are not supported yet"));
        }
    }
    Ok(())
}

/// `--annotation [TYPE:]KEY=VALUE` on every image output, as buildx: no type means
/// the manifest; `index:`, `manifest-descriptor:` (the index's entries) and
/// `index-descriptor:` (the index's entry in an OCI layout) need a multi-platform
/// build — a single-platform image has no index (BuildKit refuses them too).
pub fn add_annotations(
    specs: &[String],
    outputs: &mut [crate::export::OutputSpec],
    multi_platform: bool,
) -> Result<(), String> {
    for spec in specs {
        let (key, value) =
            spec.split_once('=').ok_or_else(|| format!("invalid --annotation {spec:?}: want KEY=VALUE"))?;
        let (kind, key) = match key.split_once(':') {
            Some((kind, key)) if !kind.contains('.') && !kind.contains('/') => (kind, key),
            _ => ("manifest", key),
        };
        if key.is_empty() {
            return Err(format!("invalid --annotation {spec:?}: empty key"));
        }
        match kind {
            "manifest" => {}
            "index" | "index-descriptor" | "manifest-descriptor" if !multi_platform => {
                return Err(format!(
                    "--annotation {spec:?}: {kind} annotations need a multi-platform build (--platform A,B): a single-platform image has no index"
                ));
            }
            "index" | "index-descriptor" | "manifest-descriptor" => {}
            other => {
                return Err(format!(
                    "invalid --annotation {spec:?}: unknown type {other:?} (want manifest, index, manifest-descriptor or index-descriptor)"
                ));
            }
        }
        for output in outputs.iter_mut().filter(|o| o.is_image()) {
            let (key, value) = (key.to_string(), value.to_string());
            match kind {
                "index" => output.index_annotations.index.insert(key, value),
                "manifest-descriptor" => output.index_annotations.descriptors.insert(key, value),
                "index-descriptor" => output.index_descriptor_annotations.insert(key, value),
                _ => output.annotations.insert(key, value),
            };
        }
    }
    Ok(())
}

/// `--add-host HOST:IP` (or `HOST=IP`, as buildx also takes it). IPv6 addresses
/// contain colons: the host is what comes before the first one.
pub fn parse_add_hosts(specs: &[String]) -> Result<Vec<(String, IpAddr)>, String> {
    let mut out = Vec::new();
    for spec in specs {
        let (host, ip) = spec
            .split_once('=')
            .or_else(|| spec.split_once(':'))
            .filter(|(h, i)| !h.is_empty() && !i.is_empty())
            .ok_or_else(|| format!("invalid --add-host {spec:?}: want HOST:IP"))?;
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        if ip == "host-gateway" {
            return Err(format!("--add-host {spec:?}: host-gateway is not supported (give the address)"));
        }
        let ip: IpAddr = ip.parse().map_err(|_| format!("invalid --add-host {spec:?}: {ip:?} is not an IP address"))?;
        out.push((host.to_string(), ip));
    }
    Ok(out)
}

/// `--shm-size 128m`: bytes, as Docker sizes are written. They are capped as any
/// tmpfs of a step is (`sandbox::tmpfs_size`, `/dev/shm` lives in memory) when the
/// step runs (`step_flags::resources`), not here: they count in the step's key.
pub fn parse_shm_size(value: Option<&str>) -> Result<Option<u64>, String> {
    let Some(value) = value else { return Ok(None) };
    let bytes = crate::sandbox::parse_size(value).map_err(|e| format!("--shm-size: {e}"))?;
    if bytes == 0 {
        return Err(format!("--shm-size {value:?}: must be more than 0"));
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_hosts() {
        let hosts = parse_add_hosts(&["db:10.0.0.2".into(), "v6=::1".into(), "x:[fe80::1]".into()]).unwrap();
        assert_eq!(hosts[0], ("db".to_string(), "10.0.0.2".parse().unwrap()));
        assert_eq!(hosts[1].1, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(hosts[2].1, "fe80::1".parse::<IpAddr>().unwrap());
        assert!(parse_add_hosts(&["db".into()]).is_err());
        assert!(parse_add_hosts(&["db:nothere".into()]).is_err());
        assert!(parse_add_hosts(&["db:host-gateway".into()]).unwrap_err().contains("host-gateway"));
    }

    #[test]
    fn shm_sizes() {
        assert_eq!(parse_shm_size(Some("128m")).unwrap(), Some(128 << 20));
        assert_eq!(parse_shm_size(None).unwrap(), None);
        assert!(parse_shm_size(Some("0")).is_err() && parse_shm_size(Some("lots")).is_err());
    }
}
