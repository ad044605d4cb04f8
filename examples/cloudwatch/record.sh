#!/bin/sh
# Record a benchmark on an EC2 GPU instance whose CloudWatch agent runs agent-config.json, read the
# agent's GPU metrics back for the run's window (instance id and region from instance metadata),
# then export energy per token to CloudWatch. Usage: ./record.sh python bench.py
set -e
wattprof record -o runs/nightly -n nightly-8b -c cloudwatch:agent_version=1.300056.0 -- "$@"
wattprof export cloudwatch runs/nightly --namespace WattProf --tag-dimension model
