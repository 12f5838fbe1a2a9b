//! The flags CI scripts pass to `docker buildx build` that are not about the
//! Dockerfile: `--add-host`, `--shm-size`, and the attestation flags (`--attest`,
//! `--sbom`, `--provenance`), refused rather than ignored. (`--annotation` belongs to
//! the outputs: `export::add_annotations`.)

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
