# Mayfly's side of the broker benchmarks, sourced by bench/run_broker.sh
# and bench/run_soak.sh so both measure the same server and request.

# mayfly_config DIR PORT: DIR/mayfly.toml for `mayfly serve` on PORT, with
# the benchmark's issuer (DIR/keys/jwks.json, from jwt_keys.py) and a
# permit-all policy in DIR/policies.
mayfly_config() {
    local dir="$1" port="$2"
    mkdir -p "$dir/policies"
    echo 'permit(principal, action, resource);' >"$dir/policies/bench.cedar"
    cat >"$dir/mayfly.toml" <<TOML
[server]
listen = "127.0.0.1:$port"

[[issuer]]
name = "bench"
issuer = "https://ci.bench.invalid"
audiences = ["mayfly"]
algorithms = ["ES256"]
jwks_file = "$dir/keys/jwks.json"

[policy]
dir = "$dir/policies"

# One benchmark workload makes every exchange: the per-workload rate limit
# (200/s by default) would measure the limit, not the broker.
[limits]
exchanges_per_second_per_workload = 0
TOML
}

# mayfly_exchange_form FILE JWT TASK [TTL]: the RFC 8693 exchange's form
# body for TASK with the workload JWT, asking TTL seconds when given.
mayfly_exchange_form() {
    printf '%s' "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=$2&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&audience=https%3A%2F%2Fapi.bench.invalid&task_id=$3${4:+&requested_ttl=$4}" >"$1"
}
