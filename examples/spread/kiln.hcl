# The spread app as a descriptor.
service "spread" {
  source = "."

  spread {
    replicas = 4
    choice   = "two-choices"
  }
}
