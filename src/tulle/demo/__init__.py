"""The demo: a small bookstore run entirely through sidecars."""
