defmodule ExESDB.Subscriptions.TransientClusterTest do
  # The transient subscription suite on a 3-node cluster: this node's
  # replica fans out what it applies, whichever node wrote it.
  use ExESDB.SubscriptionsConformance.Transient,
    backend: ExESDB.Test.ClusterBackend,
    async: false

  @moduletag skip:
               not ExESDB.Test.ClusterHelpers.cluster_support?() &&
                 "no raft in this build (make raft)"
end

defmodule ExESDB.Subscriptions.PersistentClusterTest do
  # The persistent subscription suite on a 3-node cluster (its
  # checkpoints written through the gateway); the subscriptions run on
  # the node they were started on, not yet on the leader.
  use ExESDB.SubscriptionsConformance.Persistent,
    backend: ExESDB.Test.ClusterBackend,
    async: false

  @moduletag skip:
               not ExESDB.Test.ClusterHelpers.cluster_support?() &&
                 "no raft in this build (make raft)"
end
