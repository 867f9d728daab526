defmodule ExESDB.Subscriptions.PersistentCNodeClusterTest do
  # The persistent subscription suite on the C node backend with a
  # cluster of three C node replicas, the backend's own C node a
  # follower: events are pushed by the follower as it applies them,
  # checkpoints are written through the leader (async writes routed in
  # order). ~20 s. The transient suites pass there too (8 cases, 25 s:
  # left out of make test for their cost).
  use ExESDB.SubscriptionsConformance.Persistent,
    backend: ExESDB.Test.CNodeCluster,
    async: true

  @moduletag skip:
               not ExESDB.Test.ClusterHelpers.cluster_support?() &&
                 "no raft in this build (make raft)"
end
