defmodule ExESDB do
  @moduledoc """
  ExESDB, a BEAM-native event store whose storage engine is C on LMDB.

  Start a store with `ExESDB.System` and use it through `ExESDB.Streams`
  and `ExESDB.Snapshots`; options are described in `ExESDB.Options`.
  Erlang users call the `ex_esdb` module. Reads and writes go straight
  from the calling process to the C core through the NIF.
  """
end
