defmodule ExESDB.StreamsCNodeClusterTest do
  # The shared stream/snapshot conformance suite on the C node backend
  # with a cluster of three C node replicas, the backend's own C node a
  # follower: writes go to the leader, reads come from the follower.
  use ExESDB.StreamsConformance, backend: ExESDB.Test.CNodeCluster, async: false

  @moduletag skip:
               not ExESDB.Test.ClusterHelpers.cluster_support?() &&
                 "no raft in this build (make raft)"
end
