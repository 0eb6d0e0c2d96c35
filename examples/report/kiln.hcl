# The report cron job as a descriptor: kiln describe ./examples/report/kiln.hcl
# prints the same spec as the program's own sdk.RunJob call.
service "report" {
  source = "."

  cron {
    schedule           = "@every 1m"
    concurrency_policy = "forbid"
  }
}
