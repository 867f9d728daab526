defmodule ExESDB do
  @moduledoc """
  ExESDB, a BEAM-native event store whose storage engine is C on LMDB.

  Start a store with `ExESDB.System` and use it through `ExESDB.Streams`
  and `ExESDB.Snapshots`; options are described in `ExESDB.Options`.
  Erlang users call the `ex_esdb` module. Reads and writes go straight
  from the calling process to the C core through the NIF.

  Errors are values: every public function of `ExESDB.Streams`,
  `ExESDB.Snapshots` and `ExESDB.Subscriptions` answers a wrong argument
  with `{:error, {:invalid_<what>, value}}` (`{:invalid_stream_id, ""}`,
  `{:invalid_direction, :sideways}`, `{:invalid_start_from, :nowhere}`,
  ...) and does not raise. Store options are checked once, when the store
  starts: an invalid one makes `ExESDB.System.start_link/1` raise an
  `ArgumentError` (see `ExESDB.Options`).
  """
end
