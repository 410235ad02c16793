# Same role as the real image's /etc/bash.bashrc: a prompt and a umask.
export PS1="\[\e[31m\]tf-docker\[\e[m\] \[\e[33m\]\w\[\e[m\] > "
umask 002
