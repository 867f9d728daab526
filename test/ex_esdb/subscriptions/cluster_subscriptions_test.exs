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
  # subscriptions run on the leader, ExESDB.Subscriptions.Placement).
  use ExESDB.SubscriptionsConformance.Persistent,
    backend: ExESDB.Test.ClusterBackend,
    async: false

  # the leader calls this module's funs (partition_by, transform)
  @after_compile {ExESDB.Test.ClusterBackend, :keep_code}

  @moduletag skip:
               not ExESDB.Test.ClusterHelpers.cluster_support?() &&
                 "no raft in this build (make raft)"
end

defmodule ExESDB.Subscriptions.CompetingConsumersClusterTest do
  # The competing consumers suite on a 3-node cluster: a shared
  # persistent subscription runs on the leader, its subscribers here.
  use ExESDB.SubscriptionsConformance.CompetingConsumers,
    backend: ExESDB.Test.ClusterBackend,
    async: false

  # the leader calls this module's funs (partition_by)
  @after_compile {ExESDB.Test.ClusterBackend, :keep_code}

  @moduletag skip:
               not ExESDB.Test.ClusterHelpers.cluster_support?() &&
                 "no raft in this build (make raft)"
end
