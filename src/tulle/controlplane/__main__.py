"""``python -m tulle.controlplane``: what `tulle up` runs (in the foreground or detached)."""

from __future__ import annotations

import argparse
import sys

from tulle.errors import TulleError
from tulle.settings import StatePaths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tulle.controlplane")
    parser.add_argument("--state-dir")
    parser.add_argument("--api-port", type=int)
    parser.add_argument("--xds-port", type=int)
    parser.add_argument("--identity-port", type=int)
    parser.add_argument("--trust-domain")
    parser.add_argument("--join-token-ttl", type=float)
    parser.add_argument("--stale-after", type=float)
    parser.add_argument("--store")
    parser.add_argument("--etcd-ca")
    parser.add_argument("--etcd-cert")
    parser.add_argument("--etcd-key")
    parser.add_argument("--ca-encryption-key")
    parser.add_argument("--listen")
    parser.add_argument("--xds-workers", type=int)
    parser.add_argument("--history-keep", type=int)
    parser.add_argument("--compact-every", type=float)
    parser.add_argument("--detached", action="store_true",
                        help="stderr is already the log file: do not log there twice")
    args = parser.parse_args(argv)
    from tulle.controlplane.daemon import StartOptions, run_foreground

    options = StartOptions(api_port=args.api_port, xds_port=args.xds_port,
                           identity_port=args.identity_port, trust_domain=args.trust_domain,
                           join_token_ttl_s=args.join_token_ttl,
                           stale_after_s=args.stale_after, store=args.store,
                           etcd_ca=args.etcd_ca, etcd_cert=args.etcd_cert,
                           etcd_key=args.etcd_key, ca_encryption_key=args.ca_encryption_key,
                           listen=args.listen, xds_workers=args.xds_workers,
                           history_keep=args.history_keep,
                           compact_every_s=args.compact_every)
    try:
        return run_foreground(StatePaths.resolve(args.state_dir), options,
                              log_to_stderr=not args.detached)
    except TulleError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
