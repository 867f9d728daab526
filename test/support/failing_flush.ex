defmodule ExESDB.Test.FailingFlush do
  @moduledoc false
  # Runs on a peer VM whose flushes of data.mdb fail from the Nth on
  # (build/esdb_io_shim.so): `count` appends through the Erlang API, then
  # the store's stats.

  def run(path, count) do
    {:ok, store} = :ex_esdb.open(path, %{})

    results =
      for i <- 1..count,
          do: :ex_esdb.append(store, "s", :any, [%{event_type: "t", data: "#{i}"}])

    {results, :ex_esdb.stats(store)}
  end
end
