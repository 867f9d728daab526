defmodule ExESDB.Serializer do
  @moduledoc """
  How event data, metadata and snapshot data become the bytes the store
  keeps. Chosen per store with the `serializer:` option; the default is
  `ExESDB.Serializer.Term`.
  """

  @doc "Encode a term to bytes."
  @callback serialize(term()) :: binary()

  @doc """
  Decode bytes written by `serialize/1`. `opts` carries `:type`, the
  event type (or snapshot source type) the bytes were stored under.
  """
  @callback deserialize(binary(), keyword()) :: term()
end

defmodule ExESDB.Serializer.Term do
  @moduledoc """
  The default serializer: `:erlang.term_to_binary/1`, read back with
  `[:safe]` so stored bytes cannot create atoms or functions. Bytes that
  are not term_to_binary output (written through the Erlang API, say) are
  returned as they are. Reads with this serializer decode in the NIF.
  """
  @behaviour ExESDB.Serializer

  @impl true
  def serialize(term), do: :erlang.term_to_binary(term)

  @impl true
  def deserialize(<<>>, _opts), do: nil

  def deserialize(bin, _opts) do
    :erlang.binary_to_term(bin, [:safe])
  rescue
    ArgumentError -> bin
  end
end
