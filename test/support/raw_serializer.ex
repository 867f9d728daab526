defmodule ExESDB.Test.RawSerializer do
  @moduledoc false
  # Binaries stored as they are: what the Erlang API stores.
  @behaviour ExESDB.Serializer

  @impl true
  def serialize(bin) when is_binary(bin), do: bin

  @impl true
  def deserialize(bin, _opts), do: bin
end
