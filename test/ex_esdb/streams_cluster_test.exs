defmodule ExESDB.StreamsClusterTest do
  # The streams and snapshots conformance suite on a 3-node cluster
  # (this VM and two :peer nodes, raft on loopback): writes go through
  # the gateway to whichever node leads, reads are this node's replica's.
  use ExESDB.StreamsConformance, backend: ExESDB.Test.ClusterBackend, async: false

  @moduletag skip:
               not ExESDB.Test.ClusterHelpers.cluster_support?() &&
                 "no raft in this build (make raft)"
end
