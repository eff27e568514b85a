//! Finds the decoy bridge's ports and follows them with rtnetlink link events, so ports that
//! join the bridge after start are attached too.
//!
//! Input: the bridge name. Output: [`PortEvent`]s on a channel.
use anyhow::{Context as _, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage},
};
use netlink_sys::{AsyncSocket as _, SocketAddr};
use rtnetlink::constants::RTMGRP_LINK;
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortEvent {
    /// A link is (now) a port of the bridge.
    Joined { ifindex: u32, name: String },
    /// A link left the bridge or was deleted.
    Left { ifindex: u32 },
}

/// Link facts we care about, decoded from a netlink message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkFacts {
    pub ifindex: u32,
    pub name: Option<String>,
    pub controller: Option<u32>,
    pub is_bridge: bool,
}

pub fn facts(msg: &LinkMessage) -> LinkFacts {
    let mut f = LinkFacts {
        ifindex: msg.header.index,
        name: None,
        controller: None,
        is_bridge: false,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => f.name = Some(n.clone()),
            LinkAttribute::Controller(c) => f.controller = Some(*c),
            LinkAttribute::LinkInfo(infos) => {
                f.is_bridge |= infos
                    .iter()
                    .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge)));
            }
            _ => {}
        }
    }
    f
}

/// What a link message means for a bridge with index `bridge`.
pub fn classify(msg: &RouteNetlinkMessage, bridge: u32) -> Option<PortEvent> {
    match msg {
        RouteNetlinkMessage::NewLink(m) => {
            let f = facts(m);
            match (f.controller, f.name) {
                (Some(c), Some(name)) if c == bridge => Some(PortEvent::Joined {
                    ifindex: f.ifindex,
                    name,
                }),
                _ => Some(PortEvent::Left { ifindex: f.ifindex }),
            }
        }
        RouteNetlinkMessage::DelLink(m) => Some(PortEvent::Left {
            ifindex: m.header.index,
        }),
        _ => None,
    }
}

/// Subscribes to link events, then lists the bridge's current ports (in that order, so no port
/// joining in between is missed; duplicates are harmless). Returns the bridge's ifindex.
pub async fn watch(bridge: &str) -> anyhow::Result<(u32, mpsc::UnboundedReceiver<PortEvent>)> {
    let (mut conn, _, mut messages) =
        rtnetlink::new_connection().context("cannot open a netlink socket")?;
    conn.socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, RTMGRP_LINK))
        .context("cannot subscribe to netlink link events")?;
    tokio::spawn(conn);

    let (dump_conn, handle, _) =
        rtnetlink::new_connection().context("cannot open a netlink socket")?;
    tokio::spawn(dump_conn);
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .context("cannot list network links")?;
    let all: Vec<LinkFacts> = links.iter().map(facts).collect();
    let Some(br) = all.iter().find(|f| f.name.as_deref() == Some(bridge)) else {
        bail!(
            "bridge {bridge:?} not found in this network namespace (create it first, or set \
             --bridge / DECNET_SNIFFER_BRIDGE to an existing bridge)"
        );
    };
    if !br.is_bridge {
        bail!(
            "{bridge:?} exists but is not a bridge; the sniffer attaches to the ports of a bridge"
        );
    }
    let bridge_idx = br.ifindex;

    let (tx, rx) = mpsc::unbounded_channel();
    for f in &all {
        if let (Some(c), Some(name)) = (f.controller, &f.name)
            && c == bridge_idx
        {
            let _ = tx.send(PortEvent::Joined {
                ifindex: f.ifindex,
                name: name.clone(),
            });
        }
    }
    tokio::spawn(async move {
        while let Some((msg, _)) = messages.next().await {
            let NetlinkPayload::InnerMessage(inner) = msg.payload else {
                continue;
            };
            if let Some(ev) = classify(&inner, bridge_idx)
                && tx.send(ev).is_err()
            {
                break;
            }
        }
    });
    Ok((bridge_idx, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, controller: Option<u32>) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::IfName(name.into()));
        if let Some(c) = controller {
            m.attributes.push(LinkAttribute::Controller(c));
        }
        m
    }

    #[test]
    fn classifies_joins_and_leaves() {
        let bridge = 5;
        let joined = RouteNetlinkMessage::NewLink(link(7, "vd1", Some(5)));
        assert_eq!(
            classify(&joined, bridge),
            Some(PortEvent::Joined {
                ifindex: 7,
                name: "vd1".into()
            })
        );
        let other = RouteNetlinkMessage::NewLink(link(8, "eth0", Some(9)));
        assert_eq!(
            classify(&other, bridge),
            Some(PortEvent::Left { ifindex: 8 })
        );
        let free = RouteNetlinkMessage::NewLink(link(8, "eth0", None));
        assert_eq!(
            classify(&free, bridge),
            Some(PortEvent::Left { ifindex: 8 })
        );
        let gone = RouteNetlinkMessage::DelLink(link(7, "vd1", Some(5)));
        assert_eq!(
            classify(&gone, bridge),
            Some(PortEvent::Left { ifindex: 7 })
        );
    }

    #[test]
    fn bridge_kind_is_detected() {
        let mut m = link(5, "br0", None);
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        let f = facts(&m);
        assert!(f.is_bridge);
        assert_eq!(f.name.as_deref(), Some("br0"));
        assert!(!facts(&link(6, "veth", Some(5))).is_bridge);
    }
}
