#!/usr/bin/env bash
# Gateway Load Balancer demo in network namespaces (needs root, iproute2 and curl):
#
#   client 10.1.0.2 ── gw ── server 10.2.0.2 (weir demo-backend on :80)
#                      │
#          appliance 1 10.3.0.2, appliance 2 10.4.0.2 (weir appliance)
#
# `gw` runs `weir up examples/gwlb.yaml`; policy routing there sends client and server traffic
# into the TUN device gwe0 (the gateway endpoint), so every packet between client and server
# goes through the GWLB and one of the appliances, both directions of a flow through the same
# one. The script sends a few requests, prints which appliance saw each flow, and cleans up.
#
#   sudo examples/gwlb-demo.sh            # uses target/release/weir (built if missing)
#   sudo WEIR=/path/to/weir examples/gwlb-demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WEIR=${WEIR:-target/release/weir}
[ -x "$WEIR" ] || cargo build --release
P=weirdemo-
NS=(cl sv gw a1 a2)
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for n in "${NS[@]}"; do ip netns del "$P$n" 2>/dev/null || true; done
}
trap cleanup EXIT

for n in "${NS[@]}"; do ip netns add "$P$n"; ip -n "$P$n" link set lo up; done
link() { # ns inner outer subnet
  ip link add "$2" netns "$P$1" type veth peer name "$3" netns "${P}gw"
  ip -n "$P$1" addr add "10.$4.0.2/24" dev "$2"
  ip -n "${P}gw" addr add "10.$4.0.1/24" dev "$3"
  ip -n "$P$1" link set "$2" up
  ip -n "${P}gw" link set "$3" up
  ip -n "$P$1" route add default via "10.$4.0.1"
}
link cl c0 c1 1
link sv s0 s1 2
link a1 a0 a1 3
link a2 b0 b1 4
ip netns exec "${P}gw" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
  net.ipv4.conf.default.rp_filter=0 net.ipv6.conf.default.disable_ipv6=1
ip -n "${P}gw" tuntap add dev gwe0 mode tun
ip -n "${P}gw" link set gwe0 up
ip -n "${P}gw" route add default dev gwe0 table 100
ip -n "${P}gw" rule add iif c1 lookup 100
ip -n "${P}gw" rule add iif s1 lookup 100

ip netns exec "${P}sv" "$WEIR" demo-backend --address 10.2.0.2 --port 80 --name server >/dev/null &
PIDS+=($!)
ip netns exec "${P}a1" "$WEIR" appliance --listen 10.3.0.2:6081 --health-address 10.3.0.2:8080 >/dev/null &
PIDS+=($!)
ip netns exec "${P}a2" "$WEIR" appliance --listen 10.4.0.2:6081 --health-address 10.4.0.2:8080 \
  --drop tcp:8443 >/dev/null &
PIDS+=($!)
ip netns exec "${P}gw" "$WEIR" up examples/gwlb.yaml --dns-address off &
PIDS+=($!)

echo "waiting for the appliances to be healthy..."
for _ in $(seq 1 40); do
  states=$(ip netns exec "${P}gw" env AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo \
    aws --endpoint-url http://127.0.0.1:9400 --region us-east-1 --output text elbv2 \
    describe-target-health --target-group-arn "$(ip netns exec "${P}gw" env AWS_ACCESS_KEY_ID=demo \
      AWS_SECRET_ACCESS_KEY=demo aws --endpoint-url http://127.0.0.1:9400 --region us-east-1 \
      --output text elbv2 describe-target-groups --names appliances \
      --query 'TargetGroups[0].TargetGroupArn' 2>/dev/null)" \
    --query 'TargetHealthDescriptions[].TargetHealth.State' 2>/dev/null || true)
  [ "$(echo "$states" | grep -o healthy | wc -l)" -eq 2 ] && [[ "$states" != *unhealthy* ]] && break
  sleep 1
done

for port in 40001 40002 40003 40004 40005 40006; do
  printf 'client port %s -> ' "$port"
  ip netns exec "${P}cl" curl -s --max-time 3 --local-port "$port" http://10.2.0.2/ | head -n 1

done
for a in 1 2; do
  echo "flows seen by appliance $a (proto src dst returned dropped):"
  ip netns exec "${P}a$a" curl -s "http://10.$((a + 2)).0.2:8080/flows"
done
