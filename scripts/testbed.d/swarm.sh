# shellcheck shell=bash
# A real three-node Docker Swarm on this one machine, sourced by scripts/testbed
# (which defines ROOT, STATE, RUN, CACHE, REGISTRY, log, die and pid_runs).
#
#   scripts/testbed swarm up               start what is not running, write .testbed/swarm.env
#   scripts/testbed swarm down             leave the swarm, stop the nodes, remove namespaces
#   scripts/testbed swarm status           show the nodes
#   scripts/testbed swarm kill-node NAME   SIGKILL a node's dockerd (fault tests; `up` restarts it)
#
# Layout: each node (manager, worker1, worker2) is a dockerd with its own
# network namespace, data root, exec root, API socket, cgroup parent and an
# empty config file, so nothing of the host's engine leaks in or is touched.
# The nodes' namespaces hang off a bridge in a further namespace
# ($SW_NS_PREFIX-bridge, subnet $SW_UNDERLAY.0/24). The host gets a veth into
# that bridge ($SW_HOST_IF, $SW_UNDERLAY.1): the hub, a host process, listens
# there and tasks reach it through their node's docker_gwbridge (NAT).
#
# Host to task: servers join the attachable overlay $SW_NETWORK
# ($SW_OVERLAY_SUBNET). A gateway container on the manager sits on that
# overlay and on the manager's docker_gwbridge, forwards and masquerades into
# the overlay; the manager routes the overlay subnet to it and the host routes
# it to the manager. So the hub reaches a task at its overlay address.
#
# Registry: inside a namespace 127.0.0.1 is the namespace's own loopback. Each
# node runs a socat on its 127.0.0.1:5000 that goes through a unix socket
# (filesystem sockets cross network namespaces) to a socat on the host that
# connects to the host's 127.0.0.1:5000. Image references and digests are the
# same on the nodes as on the host, and the traffic never leaves loopback.

SW_RUN="$RUN/swarm"
# Kept across `down`: the nodes' image stores are the cache for the next `up`.
SW_DATA=${TFSPAWNER_TESTBED_SWARM_DATA:-/var/lib/tfspawner-testbed/swarm}
# Short on purpose: libnetwork and containerd put sockets under the exec root,
# and a unix socket path has at most 107 bytes.
SW_EXEC=/run/tfsw
SW_NS_PREFIX=tfsw
SW_BRIDGE_NS=$SW_NS_PREFIX-bridge
SW_HOST_IF=tfsw-host
SW_UNDERLAY=172.30.231
SW_ADDR_POOL=10.231.0.0/16
SW_NETWORK=tfspawner-swarm
SW_OVERLAY_SUBNET=10.231.100.0/24
SW_GATEWAY=tfspawner-swarm-gw
SW_NODES=(manager worker1 worker2)
declare -A SW_HOST_NUM=([manager]=10 [worker1]=11 [worker2]=12)
SW_GPUS_PER_WORKER=3
SW_NODE_LABEL=tfspawner.testbed.node
SW_GPU_RESOURCE=NVIDIA-GPU

sw_addr() { echo "$SW_UNDERLAY.${SW_HOST_NUM[$1]}"; }
sw_sock() { echo "$SW_RUN/$1.sock"; }
sw_ns() { echo "$SW_NS_PREFIX-$1"; }
sw_docker() {
  local node=$1
  shift
  docker -H "unix://$(sw_sock "$node")" "$@"
}
sw_answers() { sw_docker "$1" version --format '{{.Server.Version}}' >/dev/null 2>&1; }
sw_in() {
  local ns=$1
  shift
  # Not `ip netns exec`: it remounts /sys, which hides the cgroup mounts from dockerd.
  nsenter --net="/run/netns/$ns" -- "$@"
}

# sw_gpus NODE -> the node's fake GPU UUIDs, one a line (none on the manager).
sw_gpus() {
  [ "$1" = manager ] && return 0
  local i
  for ((i = 0; i < SW_GPUS_PER_WORKER; i++)); do
    printf 'GPU-7e57b0d0-%04d-4000-8000-%012d\n' "${1#worker}" "$i"
  done
}

sw_ensure_packages() {
  command -v socat >/dev/null && command -v nsenter >/dev/null && return
  log "installing socat"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends socat util-linux >/dev/null
}

sw_veth() {
  # sw_veth NS IFNAME PEER: a veth whose IFNAME end is in NS and PEER end in the bridge namespace.
  local ns=$1 ifname=$2 peer=$3
  ip -n "$SW_BRIDGE_NS" link show "$peer" >/dev/null 2>&1 && return
  if [ "$ns" = host ]; then
    ip link del "$ifname" 2>/dev/null || true
    ip link add "$ifname" type veth peer name "$peer" netns "$SW_BRIDGE_NS"
  else
    ip -n "$ns" link del "$ifname" 2>/dev/null || true
    ip link add "$ifname" netns "$ns" type veth peer name "$peer" netns "$SW_BRIDGE_NS"
  fi
  ip -n "$SW_BRIDGE_NS" link set "$peer" master br0 up
}

sw_ensure_network() {
  local node ns
  if [ ! -e "/run/netns/$SW_BRIDGE_NS" ]; then
    log "creating the bridge namespace $SW_BRIDGE_NS"
    ip netns add "$SW_BRIDGE_NS"
  fi
  ip -n "$SW_BRIDGE_NS" link set lo up
  ip -n "$SW_BRIDGE_NS" link show br0 >/dev/null 2>&1 || ip -n "$SW_BRIDGE_NS" link add br0 type bridge
  ip -n "$SW_BRIDGE_NS" link set br0 up
  for node in "${SW_NODES[@]}"; do
    ns=$(sw_ns "$node")
    [ -e "/run/netns/$ns" ] || ip netns add "$ns"
    ip -n "$ns" link set lo up
    sw_veth "$ns" eth0 "v-$node"
    ip -n "$ns" addr replace "$(sw_addr "$node")/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
  sw_veth host "$SW_HOST_IF" v-host
  ip addr replace "$SW_UNDERLAY.1/24" dev "$SW_HOST_IF"
  ip link set "$SW_HOST_IF" up
}

# Registry forwarders: one on the host (unix socket -> 127.0.0.1:5000), one per node.
sw_forwarder() {
  local name=$1 pidfile="$SW_RUN/$1.pid"
  shift
  if [ -f "$pidfile" ] && pid_runs "$(cat "$pidfile")" socat; then return; fi
  setsid "$@" >"$SW_RUN/$name.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

sw_ensure_registry_path() {
  local node
  sw_forwarder registry-host socat "UNIX-LISTEN:$SW_RUN/registry.sock,fork,unlink-early,mode=600" "TCP:$REGISTRY"
  for node in "${SW_NODES[@]}"; do
    sw_forwarder "registry-$node" nsenter --net="/run/netns/$(sw_ns "$node")" -- \
      socat "TCP-LISTEN:${REGISTRY##*:},bind=${REGISTRY%:*},fork,reuseaddr" "UNIX-CONNECT:$SW_RUN/registry.sock"
  done
}

sw_ensure_node() {
  local node=$1 pidfile="$SW_RUN/$1.dockerd.pid"
  local args=()
  if sw_answers "$node"; then return; fi
  if [ -f "$pidfile" ] && pid_runs "$(cat "$pidfile")" dockerd; then
    log "waiting for the $node dockerd that is already starting"
  else
    log "starting the $node dockerd"
    mkdir -p "$SW_DATA/$node" "$SW_EXEC/$node"
    args=(
      --config-file "$SW_RUN/daemon.json"
      --data-root "$SW_DATA/$node"
      --exec-root "$SW_EXEC/$node"
      -H "unix://$(sw_sock "$node")"
      --pidfile "$pidfile"
      --cgroup-parent "/tfspawner-swarm-$node"
      --label "tfspawner.testbed.swarm-node=$node"
    )
    local path=$PATH gpu
    if [ "$node" != manager ]; then
      # dockerd registers its nvidia driver only if the hook is on its PATH at start.
      path="$SW_RUN/bin:$PATH"
      args+=(--label "$GPU_LABEL")
      for gpu in $(sw_gpus "$node"); do args+=(--node-generic-resource "$SW_GPU_RESOURCE=$gpu"); done
    fi
    PATH=$path setsid nsenter --net="/run/netns/$(sw_ns "$node")" -- \
      dockerd "${args[@]}" >"$SW_RUN/$node.log" 2>&1 </dev/null &
  fi
  for _ in $(seq 60); do sw_answers "$node" && return; sleep 1; done
  tail -20 "$SW_RUN/$node.log" >&2
  die "the $node dockerd did not answer within 60s"
}

sw_node_id() { sw_docker "$1" info --format '{{.Swarm.NodeID}}'; }
sw_state() { sw_docker "$1" info --format '{{.Swarm.LocalNodeState}}'; }

sw_ensure_swarm() {
  local node token
  if [ "$(sw_state manager)" != active ]; then
    log "swarm init on the manager"
    sw_docker manager swarm init --advertise-addr "$(sw_addr manager)" \
      --listen-addr "$(sw_addr manager):2377" --default-addr-pool "$SW_ADDR_POOL" >/dev/null
  fi
  token=$(sw_docker manager swarm join-token -q worker)
  for node in "${SW_NODES[@]}"; do
    [ "$node" = manager ] && continue
    # Joined and known to the manager: nothing to do. Anything else joins afresh.
    if [ "$(sw_state "$node")" = active ] &&
      sw_docker manager node inspect "$(sw_node_id "$node")" >/dev/null 2>&1; then
      continue
    fi
    sw_docker "$node" swarm leave --force >/dev/null 2>&1 || true
    log "joining $node to the swarm"
    sw_docker "$node" swarm join --token "$token" --advertise-addr "$(sw_addr "$node")" \
      --listen-addr "$(sw_addr "$node"):2377" "$(sw_addr manager):2377" >/dev/null
  done
  for node in "${SW_NODES[@]}"; do
    sw_docker manager node update --label-add "$SW_NODE_LABEL=$node" "$(sw_node_id "$node")" >/dev/null
  done
  for _ in $(seq 60); do
    [ "$(sw_docker manager node ls --filter role=worker --format '{{.Status}}' | grep -c Ready)" = $((${#SW_NODES[@]} - 1)) ] && return
    sleep 1
  done
  sw_docker manager node ls >&2
  die "the workers did not become ready within 60s"
}

sw_test_image() { sed -n 's/^export TFSPAWNER_TEST_IMAGE=//p' "$STATE/env"; }
sw_tf_image() { sed -n 's/^export TFSPAWNER_TEST_TF_IMAGE=//p' "$STATE/env"; }

# Pulls ahead of the tests; the nodes' image stores outlive `down`.
sw_prepull() {
  local node image=$1
  shift
  for node in "$@"; do
    sw_docker "$node" image inspect "$image" >/dev/null 2>&1 && continue
    log "pulling ${image##*/} on $node"
    sw_docker "$node" pull -q "$image" >/dev/null || die "$node could not pull $image"
  done
}

# The overlay for servers and the gateway that lets the host reach it.
sw_ensure_overlay() {
  local image=$1 pid gw_bridge_ip gw_if
  sw_docker manager network inspect "$SW_NETWORK" >/dev/null 2>&1 ||
    sw_docker manager network create --driver overlay --attachable \
      --subnet "$SW_OVERLAY_SUBNET" --label tfspawner.testbed=swarm "$SW_NETWORK" >/dev/null
  if [ "$(sw_docker manager inspect --format '{{.State.Running}}' "$SW_GATEWAY" 2>/dev/null)" != true ]; then
    sw_docker manager rm -f "$SW_GATEWAY" >/dev/null 2>&1 || true
    log "starting the overlay gateway on the manager"
    sw_docker manager run -d --name "$SW_GATEWAY" --network "$SW_NETWORK" --restart unless-stopped \
      --label tfspawner.testbed=swarm --sysctl net.ipv4.ip_forward=1 --user 65534:65534 \
      --cap-drop ALL --security-opt no-new-privileges "$image" sleep infinity >/dev/null
  fi
  pid=$(sw_docker manager inspect --format '{{.State.Pid}}' "$SW_GATEWAY")
  # Its two addresses: one on the overlay, one on the manager's docker_gwbridge.
  gw_if=$(nsenter --net="/proc/$pid/ns/net" -- ip -o -4 addr show to "$SW_OVERLAY_SUBNET" | awk '{print $2; exit}')
  gw_bridge_ip=$(nsenter --net="/proc/$pid/ns/net" -- ip -o -4 addr show scope global |
    awk -v o="$gw_if" '$2 != o {split($4, a, "/"); print a[1]; exit}')
  [ -n "$gw_bridge_ip" ] || die "the gateway has no address on the manager's docker_gwbridge"
  [ -n "$gw_if" ] || die "the gateway has no interface on $SW_OVERLAY_SUBNET"
  # The gateway's own namespace: masquerade into the overlay, so tasks answer
  # through it (their default route is their own node's docker_gwbridge).
  nsenter --net="/proc/$pid/ns/net" -- sh -c "iptables -t nat -C POSTROUTING -o $gw_if -j MASQUERADE 2>/dev/null ||
    iptables -t nat -A POSTROUTING -o $gw_if -j MASQUERADE"
  # The manager's namespace: the overlay subnet via the gateway, and let the
  # host's connections into docker_gwbridge (Docker's FORWARD rules drop them).
  sw_in "$(sw_ns manager)" ip route replace "$SW_OVERLAY_SUBNET" via "$gw_bridge_ip"
  sw_in "$(sw_ns manager)" sh -c "iptables -C DOCKER-USER -i eth0 -o docker_gwbridge -d $gw_bridge_ip -j ACCEPT 2>/dev/null ||
    iptables -I DOCKER-USER -i eth0 -o docker_gwbridge -d $gw_bridge_ip -j ACCEPT"
  # The host: the overlay subnet via the manager, over the host's veth only.
  ip route replace "$SW_OVERLAY_SUBNET" via "$(sw_addr manager)" dev "$SW_HOST_IF"
}

sw_write_env() {
  local tmp node ids=() gpus line
  tmp=$(mktemp "$STATE/swarm.env.XXXXXX")
  {
    echo "# Written by scripts/testbed swarm up; read by the swarm tests."
    echo "export TFSPAWNER_TEST_SWARM_HOST=unix://$(sw_sock manager)"
    echo "export TFSPAWNER_TEST_SWARM_NETWORK=$SW_NETWORK"
    echo "export TFSPAWNER_TEST_SWARM_SUBNET=$SW_OVERLAY_SUBNET"
    # The host's address on the nodes' bridge: where a hub on this host listens for servers.
    echo "export TFSPAWNER_TEST_SWARM_HUB_IP=$SW_UNDERLAY.1"
    echo "export TFSPAWNER_TEST_SWARM_NODE_LABEL=$SW_NODE_LABEL"
    echo "export TFSPAWNER_TEST_SWARM_GPU_RESOURCE=$SW_GPU_RESOURCE"
    for node in "${SW_NODES[@]}"; do
      local id upper=${node^^}
      id=$(sw_node_id "$node")
      echo "export TFSPAWNER_TEST_SWARM_${upper}_ID=$id"
      echo "export TFSPAWNER_TEST_SWARM_${upper}_HOST=unix://$(sw_sock "$node")"
      gpus=$(sw_gpus "$node" | paste -sd, -)
      [ -n "$gpus" ] && echo "export TFSPAWNER_TEST_SWARM_${upper}_GPUS=$gpus"
      [ "$node" = manager ] || ids+=("$id")
    done
    line=$(IFS=,; echo "${ids[*]}")
    echo "export TFSPAWNER_TEST_SWARM_WORKER_IDS=$line"
  } >"$tmp"
  if cmp -s "$tmp" "$STATE/swarm.env"; then rm -f "$tmp"; else mv "$tmp" "$STATE/swarm.env"; fi
  log "wrote $STATE/swarm.env"
}

swarm_up() {
  [ "$(id -u)" = 0 ] || die "run as root"
  [ -f "$STATE/env" ] && registry_answers || die "the registry on $REGISTRY is down: run scripts/testbed up first"
  local image node
  image=$(sw_test_image)
  [ -n "$image" ] || die "no TFSPAWNER_TEST_IMAGE in $STATE/env: run scripts/testbed up first"
  sw_ensure_packages
  mkdir -p "$SW_RUN/bin" "$SW_DATA"
  install -m 0755 "$ROOT/scripts/testbed.d/nvidia-container-runtime-hook" "$SW_RUN/bin/"
  # An empty config file: the host engine's daemon.json must not apply to the nodes.
  [ -f "$SW_RUN/daemon.json" ] || echo '{}' >"$SW_RUN/daemon.json"
  sw_ensure_network
  sw_ensure_registry_path
  for node in "${SW_NODES[@]}"; do sw_ensure_node "$node"; done
  sw_ensure_swarm
  sw_prepull "$image" "${SW_NODES[@]}"
  sw_prepull "$(sw_tf_image)" worker1 worker2
  sw_ensure_overlay "$image"
  sw_write_env
}

# sw_kill PIDFILE NAME: stop the process in PIDFILE if it still runs NAME.
sw_kill() {
  local pidfile=$1 name=$2 pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if pid_runs "$pid" "$name"; then
    kill "$pid"
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$pidfile"
}

# A node's containerd and shims outlive a dockerd killed with SIGKILL.
sw_kill_leftovers() {
  local node=$1 dir pid
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    tr '\0' ' ' 2>/dev/null <"$dir/cmdline" | grep -q -- "$SW_EXEC/$node/containerd/containerd" || continue
    kill "$pid" 2>/dev/null || true
  done
}

sw_unmount_under() {
  local mnt
  # Deepest first; mountinfo escapes spaces, which these paths do not have.
  awk -v p="$1/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r mnt; do
    umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
  done
}

swarm_down() {
  local node cg
  for node in "${SW_NODES[@]}"; do
    sw_answers "$node" && sw_docker "$node" swarm leave --force >/dev/null 2>&1 || true
  done
  sw_answers manager && sw_docker manager rm -f "$SW_GATEWAY" >/dev/null 2>&1 || true
  for node in "${SW_NODES[@]}"; do
    sw_kill "$SW_RUN/$node.dockerd.pid" dockerd
    sw_kill_leftovers "$node"
    sw_kill "$SW_RUN/registry-$node.pid" socat
  done
  sw_kill "$SW_RUN/registry-host.pid" socat
  ip route del "$SW_OVERLAY_SUBNET" 2>/dev/null || true
  ip link del "$SW_HOST_IF" 2>/dev/null || true
  for node in "${SW_NODES[@]}"; do
    [ -e "/run/netns/$(sw_ns "$node")" ] && ip netns del "$(sw_ns "$node")"
  done
  [ -e "/run/netns/$SW_BRIDGE_NS" ] && ip netns del "$SW_BRIDGE_NS"
  sw_unmount_under "$SW_DATA"
  sw_unmount_under "$SW_EXEC"
  for node in "${SW_NODES[@]}"; do
    for cg in /sys/fs/cgroup/*/"tfspawner-swarm-$node"; do
      [ -d "$cg" ] || continue
      find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    rm -rf "${SW_EXEC:?}/$node"
  done
  rm -f "$SW_RUN"/*.sock "$STATE/swarm.env"
  log "swarm down (image stores kept under $SW_DATA)"
}

swarm_status() {
  local node
  for node in "${SW_NODES[@]}"; do
    if sw_answers "$node"; then
      echo "$node: $(sw_docker "$node" info --format '{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}') on $(sw_addr "$node")"
    else
      echo "$node: down"
    fi
  done
  sw_answers manager && sw_docker manager node ls
  [ -f "$STATE/swarm.env" ] && cat "$STATE/swarm.env"
  return 0
}

swarm_kill_node() {
  local node=${1:-}
  [ -n "${SW_HOST_NUM[$node]:-}" ] || die "usage: scripts/testbed swarm kill-node manager|worker1|worker2"
  local pidfile="$SW_RUN/$node.dockerd.pid"
  [ -f "$pidfile" ] && pid_runs "$(cat "$pidfile")" dockerd || die "the $node dockerd is not running"
  kill -9 "$(cat "$pidfile")"
  log "killed the $node dockerd; its containers keep running until scripts/testbed swarm up restarts it"
}

swarm_main() {
  case "${1:-}" in
    up) swarm_up ;;
    down) swarm_down ;;
    status) swarm_status ;;
    kill-node) swarm_kill_node "${2:-}" ;;
    *) echo "usage: scripts/testbed swarm up|down|status|kill-node NAME" >&2; exit 2 ;;
  esac
}
