#!/bin/sh
# fence.sh [INTERFACE]: keep a Swarm node's notebook containers away from what is not theirs.
#
# Attendees reach their containers only through nbpool's proxy. On a node, a
# container could still connect to a neighbour's published port (the node's
# own address) or to the other machines of the node's network (other nodes'
# published ports, nbpool's machine, the managers): drop both, keeping the
# replies of connections made *to* the containers (the proxy's). Run as root
# on each node once its engine runs (DOCKER-USER exists then; this waits up to
# a minute for it). INTERFACE is the node's network (default eth0). Idempotent.
# The local cluster of `make cluster` runs it at every node's start.
set -eu
dev=${1:-eth0}
subnet=$(ip -o -4 addr show dev "$dev" | awk '{print $4; exit}')
[ -n "$subnet" ] || { echo "fence: no IPv4 address on $dev" >&2; exit 1; }
for _ in $(seq 60); do iptables -nL DOCKER-USER >/dev/null 2>&1 && break; sleep 1; done
for bridge in docker0 docker_gwbridge; do
    iptables -C INPUT -i "$bridge" -j DROP 2>/dev/null || {
        iptables -I INPUT -i "$bridge" -j DROP
        iptables -I INPUT -i "$bridge" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    }
    iptables -C DOCKER-USER -i "$bridge" -d "$subnet" -j DROP 2>/dev/null || {
        iptables -I DOCKER-USER -i "$bridge" -d "$subnet" -j DROP
        iptables -I DOCKER-USER -i "$bridge" -d "$subnet" -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
    }
done
echo "fence: containers on this node may not reach it or $subnet"
