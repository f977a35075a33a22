//! The throughput parts: what the servers speak and the generator loads.
//! A module of its own so that the RPC bench (`benches/rpc`), which
//! includes this bench's servers and generator, names them too.

/// A throughput part.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Part {
    Tcp,
    Tls,
    Ws,
}

impl Part {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Part::Tcp => "tcp",
            Part::Tls => "tls",
            Part::Ws => "ws",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Part, String> {
        match s {
            "tcp" => Ok(Part::Tcp),
            "tls" => Ok(Part::Tls),
            "ws" => Ok(Part::Ws),
            other => Err(format!("unknown part `{other}`")),
        }
    }
}
